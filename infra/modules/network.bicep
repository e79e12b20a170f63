// Optional private networking (main.bicep privateNetworking=true): one virtual network with a subnet for the
// Container Apps environment and one for private endpoints, a network security group on both, and the private DNS
// zones that make each private endpoint resolve to its private address inside the network.
//
// Resource modules do not create endpoints themselves: main.bicep calls private-endpoint.bicep once per target with
// the endpoint subnet and the zone for that service, so a new resource (a Storage account, say) needs one more call.

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Virtual network name.')
param vnetName string

@description('Network security group name.')
param nsgName string

@description('Address space of the virtual network.')
param addressPrefix string = '10.40.0.0/16'

@description('Subnet of the Container Apps environment: a workload-profiles environment needs at least a /27 delegated to Microsoft.App/environments; a /23 leaves room to scale out.')
param appsSubnetPrefix string = '10.40.0.0/23'

@description('Subnet that holds the private endpoints.')
param endpointsSubnetPrefix string = '10.40.2.0/24'

// Private DNS zone per service. Storage and registry suffixes come from environment() so they are right in every
// cloud; Service Bus has no entry there and its public-cloud zone is spelled out.
var zoneNames = {
  serviceBus: 'privatelink.servicebus.windows.net'
  registry: 'privatelink${environment().suffixes.acrLoginServer}'
  blob: 'privatelink.blob.${environment().suffixes.storage}'
  table: 'privatelink.table.${environment().suffixes.storage}'
}

// Only the platform defaults (traffic inside the network, outbound to the internet); the worker has no ingress.
resource nsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: nsgName
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: vnetName
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: 'apps'
        properties: {
          addressPrefix: appsSubnetPrefix
          networkSecurityGroup: {
            id: nsg.id
          }
          delegations: [
            {
              name: 'container-apps'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: 'endpoints'
        properties: {
          addressPrefix: endpointsSubnetPrefix
          networkSecurityGroup: {
            id: nsg.id
          }
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
    ]
  }
}

var zoneList = [
  zoneNames.serviceBus
  zoneNames.registry
  zoneNames.blob
  zoneNames.table
]

resource zones 'Microsoft.Network/privateDnsZones@2024-06-01' = [for zone in zoneList: {
  name: zone
  location: 'global'
  tags: tags
}]

resource zoneLinks 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = [for i in range(0, length(zoneList)): {
  parent: zones[i]
  name: vnetName
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}]

output vnetId string = vnet.id
output appsSubnetId string = vnet.properties.subnets[0].id
output endpointsSubnetId string = vnet.properties.subnets[1].id
// Zone resource id per service (the zones above; a module output only becomes available once they exist).
output zoneIds object = {
  serviceBus: resourceId('Microsoft.Network/privateDnsZones', zoneNames.serviceBus)
  registry: resourceId('Microsoft.Network/privateDnsZones', zoneNames.registry)
  blob: resourceId('Microsoft.Network/privateDnsZones', zoneNames.blob)
  table: resourceId('Microsoft.Network/privateDnsZones', zoneNames.table)
}
