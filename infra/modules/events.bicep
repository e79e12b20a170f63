// ACS delivery reports into the reports queue: an Event Grid system topic on the Communication Service and one
// subscription, filtered to the two email report events, delivering with the topic's own managed identity (no SAS
// key anywhere) and dead-lettering what it cannot deliver into a storage container, with the same identity.

@description('Tags applied to every resource.')
param tags object

@description('System topic name.')
param topicName string

@description('Communication Service (in this resource group) whose events the topic publishes.')
param communicationServiceName string

@description('Service Bus namespace (in this resource group) holding the reports queue.')
param namespaceName string

@description('Queue the subscription delivers to; the worker\'s report consumer reads it.')
param reportsQueueName string

@description('Storage account (in this resource group) with the dead-letter container.')
param storageAccountName string

@description('Blob container for events Event Grid gave up on.')
param deadLetterContainerName string

@description('Event schema on the queue. The worker reads both; Event Grid schema is what Azure\'s email samples show.')
@allowed([
  'EventGridSchema'
  'CloudEventSchemaV1_0'
])
param eventDeliverySchema string = 'EventGridSchema'

@description('Delivery attempts before an event is dead-lettered.')
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 30

@description('Minutes Event Grid keeps retrying an event before it is dead-lettered.')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 1440

// Built-in role definition ids.
var roles = {
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
}

resource communicationService 'Microsoft.Communication/communicationServices@2025-09-01' existing = {
  name: communicationServiceName
}

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: namespaceName
}

resource reportsQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' existing = {
  parent: namespace
  name: reportsQueueName
}

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: deadLetterContainerName
}

// A Communication Service is a global resource, so its system topic is global too.
resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: topicName
  location: 'global'
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: communicationService.id
    topicType: 'Microsoft.Communication.CommunicationServices'
  }
}

// The topic's identity may only send to the reports queue...
resource topicSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(reportsQueue.id, topic.id, roles.serviceBusDataSender)
  scope: reportsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataSender)
    principalId: topic.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// ...and write dead-lettered events into the one container.
resource topicDeadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetterContainer.id, topic.id, roles.storageBlobDataContributor)
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: topic.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// Event Grid checks the identity's access when the subscription is created, so the roles come first.
resource subscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: topic
  name: 'email-reports-to-queue'
  dependsOn: [
    topicSender
    topicDeadLetterWriter
  ]
  properties: {
    eventDeliverySchema: eventDeliverySchema
    filter: {
      includedEventTypes: [
        'Microsoft.Communication.EmailDeliveryReportReceived'
        'Microsoft.Communication.EmailEngagementTrackingReportReceived'
      ]
    }
    deliveryWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      destination: {
        endpointType: 'ServiceBusQueue'
        properties: {
          resourceId: reportsQueue.id
        }
      }
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: account.id
          blobContainerName: deadLetterContainerName
        }
      }
    }
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
  }
}

output topicName string = topic.name
output subscriptionName string = subscription.name
