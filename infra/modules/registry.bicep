// Container registry for the worker image. No admin user and no anonymous pull: Container Apps pulls with the
// dedicated pull identity (AcrPull only), azd pushes with the deployer's own Entra credentials.

@description('Azure region.')
param location string

@description('Tags applied to the registry.')
param tags object

@description('Registry name (5-50 alphanumerics, globally unique).')
param registryName string

@description('Standard: more storage and build throughput than Basic, and covered by Defender vulnerability scanning. Premium adds private endpoints (main.bicep privateNetworking), geo-replication, zone redundancy and retention policies.')
@allowed([
  'Standard'
  'Premium'
])
param registrySku string = 'Standard'

@description('Principal id of the image-pull identity.')
param pullPrincipalId string

var roles = {
  acrPull: '7f951dda-4ed3-4680-a7ca-43fe172d538d'
}

resource registry 'Microsoft.ContainerRegistry/registries@2025-11-01' = {
  name: registryName
  location: location
  tags: tags
  sku: {
    name: registrySku
  }
  properties: {
    adminUserEnabled: false
    anonymousPullEnabled: false
    // Stays on even with a private endpoint: azd's remote build (ACR Tasks) and pushes from CI come from outside the
    // network. With private networking the replicas pull through the endpoint. Entra-only either way.
    publicNetworkAccess: 'Enabled'
    zoneRedundancy: 'Disabled'
  }
}

resource pullRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, pullPrincipalId, roles.acrPull)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.acrPull)
    principalId: pullPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output registryId string = registry.id
output registryName string = registry.name
output loginServer string = registry.properties.loginServer
