// Container Apps environment and the worker app: a long-running asyncio consumer that KEDA scales on the queue's
// active messages (min 0 replicas), authenticated everywhere with managed identities.

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Container Apps environment name.')
param environmentName string

@description('Container app name.')
param appName string

@description('Log Analytics workspace for the environment logs (via diagnostic settings, so no workspace key).')
param workspaceId string

@description('Subnet for a VNet-integrated environment (private networking); empty: no VNet. Set at creation only: an existing environment cannot move into a VNet.')
param infrastructureSubnetId string = ''

@description('Whether an app in the environment has public ingress (the ingest API). The worker itself has none.')
param publicIngress bool = false

@description('Image to run. Empty: a placeholder until `azd deploy` pushes the worker image.')
param image string = ''

@description('Registry login server the pull identity reads from.')
param registryLoginServer string

@description('Worker identity resource id (the app code sees it; AZURE_CLIENT_ID).')
param workerIdentityId string

@description('Worker identity client id.')
param workerClientId string

@description('Scaler identity resource id (KEDA rule only, lifecycle None).')
param scalerIdentityId string

@description('Image-pull identity resource id (lifecycle None).')
param pullIdentityId string

@description('Service Bus namespace short name (KEDA needs it for identity auth).')
param serviceBusNamespaceName string

@description('Fully qualified namespace, <name>.servicebus.windows.net (POSTBUS_SERVICEBUS_NAMESPACE).')
param serviceBusFullyQualifiedNamespace string

@description('Queue of the normal lane (POSTBUS_QUEUE).')
param queueName string

@description('Queue of the critical lane (POSTBUS_QUEUE_CRITICAL).')
param criticalQueueName string

@description('Queue of the bulk lane (POSTBUS_QUEUE_BULK).')
param bulkQueueName string

@description('Queue of ACS delivery reports the worker consumes (POSTBUS_REPORTS_QUEUE).')
param reportsQueueName string

@description('Delivery-record table, https://<account>.table.core.windows.net/<table> (POSTBUS_RECORD_URL).')
param recordUrl string

@description('ACS endpoint, https://<name>.communication.azure.com (POSTBUS_ACS_ENDPOINT).')
param acsEndpoint string

@description('JSON object alias -> sender address (POSTBUS_SENDERS).')
param senders string

@description('Application Insights connection string.')
param appInsightsConnectionString string

@description('Whether App Insights ingestion needs an Entra token (sets APPLICATIONINSIGHTS_AUTHENTICATION_STRING).')
param appInsightsEntraAuth bool = true

@description('deployment.environment reported in telemetry (POSTBUS_ENVIRONMENT).')
param deploymentEnvironment string

@description('Upper bound on replicas. Sending is bound by the ACS quota, which all replicas share: max replicas = ceil(quota per second / per-replica send rate). More replicas than that only add 429s.')
@minValue(1)
@maxValue(1000)
param maxReplicas int = 2

@description('Target active messages per replica for the KEDA azure-servicebus rule (KEDA default 5).')
@minValue(1)
param scaleMessageCount int = 100

@description('Concurrent sends per replica (POSTBUS_CONCURRENCY).')
@minValue(1)
param concurrency int = 16

@description('Service Bus prefetch per replica (POSTBUS_PREFETCH).')
@minValue(0)
param prefetch int = 64

@description('ACS send quota per minute shared by all replicas (POSTBUS_QUOTA_PER_MINUTE): the sending domain\'s, from email.bicep.')
@minValue(1)
param quotaPerMinute int

@description('ACS send quota per hour shared by all replicas (POSTBUS_QUOTA_PER_HOUR): the sending domain\'s, from email.bicep.')
@minValue(1)
param quotaPerHour int

@description('Seconds the worker spends finishing in-flight messages after SIGTERM (POSTBUS_SHUTDOWN_GRACE_SECONDS).')
@minValue(1)
@maxValue(590)
param shutdownGraceSeconds int = 25

@description('Extra seconds Container Apps waits beyond the worker grace before SIGKILL, so a clean shutdown is never cut short.')
@minValue(5)
param shutdownHeadroomSeconds int = 10

@description('CPU cores per replica.')
param cpu string = '0.5'

@description('Memory per replica (must match the CPU: 0.5 cores -> 1Gi).')
param memory string = '1Gi'

@description('Claim-check container URL (POSTBUS_ATTACHMENT_STORE_URL); empty: the variable is not set.')
param attachmentStoreUrl string = ''

var healthPort = 8080
var livenessPath = '/healthz'
// Runs until the first `azd deploy`. `azd deploy` then swaps only the image (it keeps every other property of the
// app), so the placeholder must pass the worker's own probes: this one listens on 8080 and answers /healthz, like the
// worker. (The usual Container Apps quickstart image listens on 80, so its revision would fail its startup probe.)
var placeholderImage = 'mcr.microsoft.com/dotnet/samples:aspnetapp'

resource environment 'Microsoft.App/managedEnvironments@2026-01-01' = {
  name: environmentName
  location: location
  tags: tags
  properties: {
    appLogsConfiguration: {
      destination: 'azure-monitor'
    }
    vnetConfiguration: empty(infrastructureSubnetId) ? null : {
      infrastructureSubnetId: infrastructureSubnetId
      // No ingress anywhere; internal keeps the environment's own endpoint off the internet too.
      internal: true
    }
    workloadProfiles: [
      {
        name: 'Consumption'
        workloadProfileType: 'Consumption'
      }
    ]
    // Zone redundancy needs a VNet-integrated environment. The worker has no ingress; the environment is public only
    // for the ingest API's HTTPS ingress (and not at all with private networking).
    zoneRedundant: false
    publicNetworkAccess: publicIngress && empty(infrastructureSubnetId) ? 'Enabled' : 'Disabled'
  }
}

resource environmentDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: environment
  properties: {
    workspaceId: workspaceId
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

var telemetryAuthEnv = appInsightsEntraAuth ? [
  {
    // Read by azure-monitor-opentelemetry-exporter: authenticate ingestion with this managed identity.
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'Authorization=AAD;ClientId=${workerClientId}'
  }
] : []

resource app 'Microsoft.App/containerApps@2026-01-01' = {
  name: appName
  location: location
  // azd finds the app to deploy by this tag (azure.yaml service "worker").
  tags: union(tags, {
    'azd-service-name': 'worker'
  })
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${workerIdentityId}': {}
      '${scalerIdentityId}': {}
      '${pullIdentityId}': {}
    }
  }
  properties: {
    environmentId: environment.id
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      registries: [
        {
          server: registryLoginServer
          identity: pullIdentityId
        }
      ]
      // Only the worker identity reaches the container; scaling and image pull are platform-only.
      identitySettings: [
        {
          identity: workerIdentityId
          lifecycle: 'Main'
        }
        {
          identity: scalerIdentityId
          lifecycle: 'None'
        }
        {
          identity: pullIdentityId
          lifecycle: 'None'
        }
      ]
    }
    template: {
      terminationGracePeriodSeconds: shutdownGraceSeconds + shutdownHeadroomSeconds
      containers: [
        {
          name: 'worker'
          image: empty(image) ? placeholderImage : image
          resources: {
            cpu: json(cpu)
            memory: memory
          }
          env: concat([
            {
              name: 'AZURE_CLIENT_ID'
              value: workerClientId
            }
            {
              name: 'POSTBUS_SERVICEBUS_NAMESPACE'
              value: serviceBusFullyQualifiedNamespace
            }
            {
              name: 'POSTBUS_QUEUE'
              value: queueName
            }
            {
              name: 'POSTBUS_LANES'
              value: 'true'
            }
            {
              name: 'POSTBUS_QUEUE_CRITICAL'
              value: criticalQueueName
            }
            {
              name: 'POSTBUS_QUEUE_BULK'
              value: bulkQueueName
            }
            {
              name: 'POSTBUS_REPORTS_QUEUE'
              value: reportsQueueName
            }
            {
              name: 'POSTBUS_RECORD_URL'
              value: recordUrl
            }
            {
              name: 'POSTBUS_ACS_ENDPOINT'
              value: acsEndpoint
            }
            {
              name: 'POSTBUS_SENDERS'
              value: senders
            }
            {
              name: 'POSTBUS_CONCURRENCY'
              value: string(concurrency)
            }
            {
              name: 'POSTBUS_PREFETCH'
              value: string(prefetch)
            }
            {
              name: 'POSTBUS_HEALTH_PORT'
              value: string(healthPort)
            }
            {
              name: 'POSTBUS_SHUTDOWN_GRACE_SECONDS'
              value: string(shutdownGraceSeconds)
            }
            {
              name: 'POSTBUS_QUOTA_PER_MINUTE'
              value: string(quotaPerMinute)
            }
            {
              name: 'POSTBUS_QUOTA_PER_HOUR'
              value: string(quotaPerHour)
            }
            {
              name: 'POSTBUS_ENVIRONMENT'
              value: deploymentEnvironment
            }
            {
              name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
              value: appInsightsConnectionString
            }
          ], telemetryAuthEnv, empty(attachmentStoreUrl) ? [] : [
            {
              name: 'POSTBUS_ATTACHMENT_STORE_URL'
              value: attachmentStoreUrl
            }
          ])
          // Startup and liveness only. The worker has no ingress, so a readiness probe would route no traffic; it would
          // only tie revision activation to ACS's health (/readyz fails while the breaker is open) and fail a deploy
          // during an ACS outage. /readyz stays available to operators.
          probes: [
            {
              type: 'Startup'
              httpGet: {
                path: livenessPath
                port: healthPort
              }
              periodSeconds: 2
              failureThreshold: 30
            }
            {
              type: 'Liveness'
              httpGet: {
                path: livenessPath
                port: healthPort
              }
              periodSeconds: 10
              timeoutSeconds: 3
              failureThreshold: 3
            }
          ]
        }
      ]
      scale: {
        minReplicas: 0
        maxReplicas: maxReplicas
        // ACA defaults, spelled out: the rule is polled every 30 s; replicas go 300 s after the queue empties.
        pollingInterval: 30
        cooldownPeriod: 300
        // One rule per lane: replicas follow the largest demand among them (KEDA takes the maximum).
        rules: [
          {
            name: 'servicebus-backlog'
            custom: {
              type: 'azure-servicebus'
              // KEDA 2.x: messageCount counts active messages only (scheduled retries and the DLQ do not scale).
              metadata: {
                namespace: serviceBusNamespaceName
                queueName: queueName
                messageCount: string(scaleMessageCount)
                activationMessageCount: '0'
              }
              identity: scalerIdentityId
            }
          }
          {
            // A single critical message starts a replica, and a small backlog adds one: this lane must not wait.
            name: 'servicebus-backlog-critical'
            custom: {
              type: 'azure-servicebus'
              metadata: {
                namespace: serviceBusNamespaceName
                queueName: criticalQueueName
                messageCount: '5'
                activationMessageCount: '0'
              }
              identity: scalerIdentityId
            }
          }
          {
            name: 'servicebus-backlog-bulk'
            custom: {
              type: 'azure-servicebus'
              metadata: {
                namespace: serviceBusNamespaceName
                queueName: bulkQueueName
                messageCount: string(scaleMessageCount)
                activationMessageCount: '0'
              }
              identity: scalerIdentityId
            }
          }
        ]
      }
    }
  }
}

output environmentId string = environment.id
output environmentName string = environment.name
output appId string = app.id
output appName string = app.name
