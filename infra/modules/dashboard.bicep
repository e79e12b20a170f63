// The Azure Monitor workbook (infra/postbus-workbook.json) with the pipeline's panels, bound to this deployment's
// Application Insights component, Service Bus namespace, queue, worker app and ingest API app.

@description('Azure region.')
param location string

@description('Tags applied to the workbook.')
param tags object

@description('Workbook display name.')
param displayName string

@description('Application Insights component resource id (the workbook source).')
param appInsightsId string

@description('Service Bus namespace resource id (queue depth panel).')
param namespaceId string

@description('Queue of the normal lane.')
param queueName string

@description('Queue of the critical lane (per-lane panels).')
param criticalQueueName string

@description('Queue of the bulk lane (per-lane panels).')
param bulkQueueName string

@description('Worker container app resource id (replicas panel).')
param workerAppId string

@description('Ingest API container app resource id (its replicas panel).')
param apiAppId string

@description('End-to-end latency SLO bound in milliseconds.')
param sloLatencyMs int = 300000

var template = loadTextContent('../postbus-workbook.json')
var bound = replace(replace(replace(template, '__APPINSIGHTS_ID__', appInsightsId), '__SERVICEBUS_ID__', namespaceId), '__CONTAINERAPP_ID__', workerAppId)
var lanes = replace(replace(bound, '__QUEUE_CRITICAL__', criticalQueueName), '__QUEUE_BULK__', bulkQueueName)
var serialized = replace(replace(replace(lanes, '__QUEUE__', queueName), '__SLO_MS__', string(sloLatencyMs)), '__API_APP_ID__', apiAppId)

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // Workbook names must be GUIDs; derive a stable one so redeploys update in place.
  name: guid(resourceGroup().id, appInsightsId, 'postbus-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: appInsightsId
    version: '1.0'
    serializedData: serialized
  }
}

output workbookId string = workbook.id
