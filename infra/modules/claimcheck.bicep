// Claim check: attachments too large for a Service Bus message wait in a private Blob container of the delivery
// record's Storage account, under content-addressed names (sha256/<hex>). The account is owned by its own module,
// which turns shared-key access off (allowSharedKeyAccess: false) and public blob access off; this module adds only
// what the claim check needs: the container, the lifecycle rule that ages blobs out, and two data-plane roles.
//
// Producers write blobs (Storage Blob Data Contributor on this container only: the smallest built-in role that can
// create a blob and refresh its metadata); the worker only reads them (Storage Blob Data Reader on this container).
// A send never deletes a blob, so delayed retries and dead-letter replays find it; the lifecycle rule deletes a blob
// once it has not been written or refreshed for retentionDays (publishing the same content again refreshes it).

@description('Name of the Storage account of the delivery record (shared-key access off there).')
param storageAccountName string

@description('Private container for claim-checked attachments (POSTBUS_ATTACHMENT_STORE_URL names it).')
@minLength(3)
@maxLength(63)
param containerName string = 'claim-checks'

@description('Days after its last write or refresh that a claim-checked attachment is deleted; keep it at least the delivery record retention and above the retry max age (1 day).')
@minValue(2)
@maxValue(3650)
param retentionDays int = 30

@description('Principal id of the producer identity (blob write).')
param producerPrincipalId string

@description('Principal id of the worker identity (blob read).')
param workerPrincipalId string

// Built-in roles (fixed GUIDs): data-plane access to blobs, scoped to the container below.
var blobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var blobDataReader = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: containerName
  properties: {
    publicAccess: 'None'
  }
}

// One management policy per account: if another feature needs a lifecycle rule on this account, add it here.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'claim-check-retention'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${containerName}/sha256/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: retentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

resource producerWrite 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(container.id, producerPrincipalId, blobDataContributor)
  scope: container
  properties: {
    principalId: producerPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', blobDataContributor)
  }
}

resource workerRead 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(container.id, workerPrincipalId, blobDataReader)
  scope: container
  properties: {
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', blobDataReader)
  }
}

@description('POSTBUS_ATTACHMENT_STORE_URL for producers and the worker.')
output url string = '${account.properties.primaryEndpoints.blob}${containerName}'
