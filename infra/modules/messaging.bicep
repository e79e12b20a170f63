// Service Bus: one namespace (Entra-only, no SAS keys), the notifications queue and queue-scoped role assignments.
// The queue properties mirror emulators/servicebus/Config.json; tests/infra compares the two so they cannot drift.

@description('Azure region for the namespace.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Service Bus namespace name (globally unique, 6-50 characters).')
param namespaceName string

@description('Standard is enough below ~300 emails/s (1,000 credits/s per namespace, >= 2 credits per email); Premium gives dedicated messaging units.')
@allowed([
  'Standard'
  'Premium'
])
param sku string = 'Standard'

@description('Premium messaging units (ignored for Standard).')
@allowed([
  1
  2
  4
  8
  16
])
param premiumCapacity int = 1

@description('Zone redundancy (Premium only; needs a region with availability zones).')
param zoneRedundant bool = false

@description('Reachable only through a private endpoint (main.bicep privateNetworking; needs Premium). Producers must then publish from inside the network.')
param privateOnly bool = false

@description('Queue the producers publish to and the workers consume.')
param queueName string = 'notifications'

@description('Queue that the Event Grid subscription fills with ACS delivery and engagement reports; the workers consume it.')
param reportsQueueName string = 'email-events'

@description('Log Analytics workspace that receives the namespace diagnostic logs and metrics.')
param workspaceId string

@description('Principal id of the worker identity: receives, and republishes delayed retries to the same queue.')
param workerPrincipalId string

@description('Principal id of the KEDA scaler identity.')
param scalerPrincipalId string

@description('Role of the scaler identity on the queue: DataReceiver (the least that reads the queue\'s message count with Entra) or DataOwner (fallback, still queue-scoped). See docs/deploy-azure.md.')
@allowed([
  'DataReceiver'
  'DataOwner'
])
param scalerRole string = 'DataReceiver'

@description('Principal id of the producer identity (Data Sender only).')
param producerPrincipalId string

@description('Principal id of the ingest API identity (Data Sender only); empty: no ingest API.')
param apiPrincipalId string = ''

@description('Optional: principal id of the person or pipeline running azd, granted Data Owner on the namespace (dev environments only). Empty: no assignment.')
param deployerPrincipalId string = ''

@description('Principal type of deployerPrincipalId.')
@allowed([
  'User'
  'ServicePrincipal'
])
param deployerPrincipalType string = 'User'

// Built-in role definition ids (fixed GUIDs, the same in every tenant).
var roles = {
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  serviceBusDataOwner: '090c5cfd-751d-490a-894a-3ce6f1109419'
}
// Lanes other than normal, whose queue is queueName itself; each gets the queue '<queueName>-<lane>'.
var otherLanes = [
  'critical'
  'bulk'
]
// Lanes whose queue the ingest API sends to besides the normal one (none when there is no API identity).
var apiLanes = empty(apiPrincipalId) ? [] : otherLanes
var scalerRoleId = (scalerRole == 'DataOwner') ? roles.serviceBusDataOwner : roles.serviceBusDataReceiver
var isPremium = (sku == 'Premium')
// Service Bus private endpoints exist on Premium only.
var privateEndpointOnly = privateOnly && isPremium

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: namespaceName
  location: location
  tags: tags
  sku: {
    name: sku
    tier: sku
    capacity: isPremium ? premiumCapacity : null
  }
  properties: {
    // Entra only: no SAS keys, no connection strings. The worker, the producers and the scaler use identities.
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: privateEndpointOnly ? 'Disabled' : 'Enabled'
    zoneRedundant: isPremium && zoneRedundant
  }
}

resource queue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: queueName
  properties: {
    // Keep in step with emulators/servicebus/Config.json (checked by tests/infra).
    maxDeliveryCount: 10
    lockDuration: 'PT1M'
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT10M'
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: 'P1D'
    maxSizeInMegabytes: 1024
    requiresSession: false
    enableBatchedOperations: true
    enablePartitioning: false
  }
}

// The critical and bulk lanes: two more queues with the same properties as the normal lane's, so the backlog of one
// never blocks another and each is watched and scaled on its own. The worker receives from all three.
resource laneQueues 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = [for lane in otherLanes: {
  parent: namespace
  name: '${queueName}-${lane}'
  properties: {
    // Keep in step with emulators/servicebus/Config.json (checked by tests/infra).
    maxDeliveryCount: 10
    lockDuration: 'PT1M'
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT10M'
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: 'P1D'
    maxSizeInMegabytes: 1024
    requiresSession: false
    enableBatchedOperations: true
    enablePartitioning: false
  }
}]

// ACS delivery reports, one Event Grid event per message. Event Grid delivers at least once and may repeat an event
// under the same id (the message id); the worker's record merge makes repeats harmless either way.
resource reportsQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: reportsQueueName
  properties: {
    // Keep in step with emulators/servicebus/Config.json (checked by tests/infra).
    maxDeliveryCount: 10
    lockDuration: 'PT1M'
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT10M'
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: 'P1D'
    maxSizeInMegabytes: 1024
    requiresSession: false
    enableBatchedOperations: true
    enablePartitioning: false
  }
}

// The report consumer in the worker only receives from the reports queue (it never sends to it).
resource workerReportsReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(reportsQueue.id, workerPrincipalId, roles.serviceBusDataReceiver)
  scope: reportsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataReceiver)
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource workerReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(queue.id, workerPrincipalId, roles.serviceBusDataReceiver)
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataReceiver)
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The worker's delayed retry publishes a scheduled copy to the same queue, so it also sends.
resource workerSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(queue.id, workerPrincipalId, roles.serviceBusDataSender)
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataSender)
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource producerSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(queue.id, producerPrincipalId, roles.serviceBusDataSender)
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataSender)
    principalId: producerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The ingest API publishes what its callers send, and nothing else: Data Sender on this one queue.
resource apiSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(apiPrincipalId)) {
  name: guid(queue.id, apiPrincipalId, roles.serviceBusDataSender)
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataSender)
    principalId: apiPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The scaler reads the queue's active message count (KEDA's azure-servicebus scaler asks for the entity's runtime
// properties). KEDA documents a *Manage* SAS policy for that because a Listen-only key cannot read entity
// descriptions. With Entra the read needs Microsoft.ServiceBus/*/queues/read, which Data Receiver carries (the Service
// Bus team describes receive rights as including read access to the entity's information), and Microsoft's modern web
// app reference scales Container Apps with an identity that holds only Sender and Receiver. So Data Receiver on this
// one queue is the least that works. The identity is attached with lifecycle 'None', so no container code can use its
// receive right. DataOwner remains as a queue-scoped fallback, and the "messages waiting, no worker running" alert
// pages within minutes if scaling never starts.
resource scalerReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(queue.id, scalerPrincipalId, scalerRoleId)
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', scalerRoleId)
    principalId: scalerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The same queue-scoped roles on each lane queue: the worker receives and schedules retries there, producers send,
// the scaler reads its message count.
resource laneWorkerReceivers 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (lane, i) in otherLanes: {
  name: guid(laneQueues[i].id, workerPrincipalId, roles.serviceBusDataReceiver)
  scope: laneQueues[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataReceiver)
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
  }
}]

resource laneWorkerSenders 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (lane, i) in otherLanes: {
  name: guid(laneQueues[i].id, workerPrincipalId, roles.serviceBusDataSender)
  scope: laneQueues[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataSender)
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
  }
}]

resource laneProducerSenders 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (lane, i) in otherLanes: {
  name: guid(laneQueues[i].id, producerPrincipalId, roles.serviceBusDataSender)
  scope: laneQueues[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataSender)
    principalId: producerPrincipalId
    principalType: 'ServicePrincipal'
  }
}]

// The ingest API routes each event to its lane's queue, so it sends to every lane queue (and nothing else).
resource laneApiSenders 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (lane, i) in apiLanes: {
  name: guid(laneQueues[i].id, apiPrincipalId, roles.serviceBusDataSender)
  scope: laneQueues[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataSender)
    principalId: apiPrincipalId
    principalType: 'ServicePrincipal'
  }
}]

resource laneScalerReaders 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (lane, i) in otherLanes: {
  name: guid(laneQueues[i].id, scalerPrincipalId, scalerRoleId)
  scope: laneQueues[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', scalerRoleId)
    principalId: scalerPrincipalId
    principalType: 'ServicePrincipal'
  }
}]

// Dev convenience (MWA does the same): lets the deployer run `postbus publish` and peek the DLQ.
resource deployerOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(namespace.id, deployerPrincipalId, roles.serviceBusDataOwner)
  scope: namespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataOwner)
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: namespace
  properties: {
    workspaceId: workspaceId
    // Resource-specific tables (AZMSOperationalLogs, AZMSRunTimeAuditLogs, ...), not the legacy AzureDiagnostics
    // table shared with every other resource. Metrics go to AzureMetrics either way; the stalled-worker alert reads them.
    logAnalyticsDestinationType: 'Dedicated'
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

output namespaceId string = namespace.id
output namespaceName string = namespace.name
// '<name>.servicebus.windows.net' without hard-coding the cloud's DNS suffix.
output fullyQualifiedNamespace string = split(replace(namespace.properties.serviceBusEndpoint, 'https://', ''), ':')[0]
output queueName string = queue.name
output queueId string = queue.id
output criticalQueueName string = laneQueues[0].name
output bulkQueueName string = laneQueues[1].name
output reportsQueueName string = reportsQueue.name
output reportsQueueId string = reportsQueue.id
