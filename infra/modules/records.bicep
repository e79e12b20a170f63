// Storage for the delivery record: one account (Entra only, no shared keys, TLS 1.2, blob soft delete) with the
// record table, the workers' replica roster table beside it, and the blob container where Event Grid dead-letters
// report events it could not deliver.

@description('Azure region for the storage account.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Storage account name (globally unique, 3-24 lower-case letters and digits).')
@minLength(3)
@maxLength(24)
param storageAccountName string

@description('Table that holds the delivery records (POSTBUS_RECORD_URL names it).')
param tableName string = 'deliveryrecords'

@description('Blob container for report events Event Grid could not deliver to the reports queue.')
param deadLetterContainerName string = 'eventgrid-deadletters'

@description('Days deleted blobs and containers stay recoverable (soft delete).')
@minValue(1)
@maxValue(365)
param softDeleteDays int = 7

@description('Replication. Zone-redundant by default: the record is what support reads when a customer asks.')
@allowed([
  'Standard_ZRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
])
param skuName string = 'Standard_ZRS'

@description('Principal id of the worker identity: reads and writes the record table and the roster table.')
param workerPrincipalId string

@description('Log Analytics workspace for the account\'s table and blob diagnostics.')
param workspaceId string

// Built-in role definition ids.
var roles = {
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
}

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    // Entra only: the worker and Event Grid use their identities; no account key signs anything.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      // Container Apps without a VNet have no fixed egress address to allow; Entra auth is the gate.
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
  }
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource table 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: tableName
}

// The replica roster: workers heartbeat here and count each other, so each send gate starts at its share of the
// quota. The worker derives the name from the record table's (plus 'replicas', within 63 characters).
resource rosterTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: '${take(tableName, 55)}replicas'
}

// Scoped to the one table: the worker reads and writes records there and nowhere else in the account.
resource workerTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(table.id, workerPrincipalId, roles.storageTableDataContributor)
  scope: table
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The roster table alone, likewise: heartbeats and counts, no other table.
resource workerRosterContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(rosterTable.id, workerPrincipalId, roles.storageTableDataContributor)
  scope: rosterTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource tableDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: tableService
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
  }
}

resource blobDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: blobService
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
  }
}

output accountId string = account.id
output accountName string = account.name
output tableName string = table.name
output rosterTableName string = rosterTable.name
// The worker's POSTBUS_RECORD_URL: https://<account>.table.core.windows.net/<table>, without a hard-coded DNS suffix.
output recordUrl string = '${account.properties.primaryEndpoints.table}${table.name}'
output deadLetterContainerName string = deadLetterContainer.name
