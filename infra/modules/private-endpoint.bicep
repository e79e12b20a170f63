// One private endpoint for one resource, registered in the private DNS zone of its service (modules/network.bicep),
// so the resource's usual host name resolves to the endpoint's private address inside the network.

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Private endpoint name.')
param name string

@description('Subnet that holds the endpoint.')
param subnetId string

@description('Resource id of the resource the endpoint reaches.')
param targetId string

@description('Sub-resource of the target: namespace (Service Bus), registry (ACR), blob, table (Storage).')
param groupId string

@description('Private DNS zone of that service.')
param dnsZoneId string

resource endpoint 'Microsoft.Network/privateEndpoints@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    subnet: {
      id: subnetId
    }
    privateLinkServiceConnections: [
      {
        name: name
        properties: {
          privateLinkServiceId: targetId
          groupIds: [
            groupId
          ]
        }
      }
    ]
  }
}

resource zoneGroup 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-05-01' = {
  parent: endpoint
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: groupId
        properties: {
          privateDnsZoneId: dnsZoneId
        }
      }
    ]
  }
}

output endpointId string = endpoint.id
