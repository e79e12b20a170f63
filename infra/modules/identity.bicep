// User-assigned identities. Each one does one job, so each gets only the roles that job needs:
//   worker   - the container's own identity (AZURE_CLIENT_ID): receive + send on the queue, send email, telemetry
//   scaler   - used by the KEDA rule only; attached with lifecycle 'None', never visible to container code
//   pull     - used by Container Apps to pull the image from ACR; lifecycle 'None' as well
//   producer - for the systems that publish notifications (checkout, booking, ...): Data Sender only
//   api      - the ingest API's container (AZURE_CLIENT_ID): Data Sender on the queue, read on the delivery record

@description('Azure region for the identities.')
param location string

@description('Tags applied to every identity.')
param tags object

@description('Suffix that makes the names unique in the resource group.')
param resourceToken string

@description('Resource-name prefix for user-assigned identities (abbreviations.json).')
param prefix string = 'id-'

resource worker 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = {
  name: '${prefix}worker-${resourceToken}'
  location: location
  tags: tags
}

resource scaler 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = {
  name: '${prefix}scaler-${resourceToken}'
  location: location
  tags: tags
}

resource pull 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = {
  name: '${prefix}pull-${resourceToken}'
  location: location
  tags: tags
}

resource producer 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = {
  name: '${prefix}producer-${resourceToken}'
  location: location
  tags: tags
}

resource api 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = {
  name: '${prefix}api-${resourceToken}'
  location: location
  tags: tags
}

output workerId string = worker.id
output workerPrincipalId string = worker.properties.principalId
output workerClientId string = worker.properties.clientId
output scalerId string = scaler.id
output scalerPrincipalId string = scaler.properties.principalId
output pullId string = pull.id
output pullPrincipalId string = pull.properties.principalId
output producerId string = producer.id
output producerPrincipalId string = producer.properties.principalId
output producerClientId string = producer.properties.clientId
output apiId string = api.id
output apiPrincipalId string = api.properties.principalId
output apiClientId string = api.properties.clientId
