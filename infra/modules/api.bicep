// The ingest API (`postbus api`): a second Container App in the worker's environment, with public HTTPS ingress,
// scaled on HTTP concurrency (min 1 replica, so the first request never waits for a cold start). Its own identity
// holds only Azure Service Bus Data Sender on the queue and, when the delivery record lives in Table Storage,
// Storage Table Data Reader on that account: it can queue and read status, nothing else.

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Container app name.')
param appName string

@description('Container Apps environment (the worker\'s).')
param environmentId string

@description('Image to run (the worker image; the API is `postbus api`). Empty: a placeholder until `azd deploy`.')
param image string = ''

@description('Registry login server the pull identity reads from.')
param registryLoginServer string

@description('API identity resource id (the app code sees it; AZURE_CLIENT_ID).')
param apiIdentityId string

@description('API identity client id.')
param apiClientId string

@description('API identity principal id (for the record read role).')
param apiPrincipalId string

@description('Image-pull identity resource id (lifecycle None).')
param pullIdentityId string

@description('Fully qualified namespace, <name>.servicebus.windows.net (POSTBUS_SERVICEBUS_NAMESPACE).')
param serviceBusFullyQualifiedNamespace string

@description('Queue of the normal lane (POSTBUS_QUEUE).')
param queueName string

@description('Queue of the critical lane (POSTBUS_QUEUE_CRITICAL).')
param criticalQueueName string

@description('Queue of the bulk lane (POSTBUS_QUEUE_BULK).')
param bulkQueueName string

@description('Entra tenant whose access tokens the API accepts (POSTBUS_API_ENTRA_TENANT_ID).')
param entraTenantId string

@description('Accepted token audiences as a JSON list: the API app registration\'s Application ID URI and client id (POSTBUS_API_AUDIENCES). Empty: API keys only.')
param audiences string = ''

@description('Key Vault secret URI of the client registry JSON (POSTBUS_API_CLIENTS). The API identity needs Key Vault Secrets User on that secret (docs/deploy-azure.md). Empty: clientsJson.')
param clientsSecretUri string = ''

@description('The client registry JSON itself, when it is not in Key Vault. Both empty: an empty registry (every call is refused) until one is configured.')
@secure()
param clientsJson string

@description('Where delivery records live (POSTBUS_RECORD_URL), e.g. https://<account>.table.core.windows.net/records. Empty: an empty local file, so status answers only for events this replica queued.')
param recordUrl string = ''

@description('Storage account of the record table in this resource group; the API identity gets Storage Table Data Reader on it. Empty: no assignment.')
param recordStorageAccountName string = ''

@description('Application Insights connection string.')
param appInsightsConnectionString string

@description('Whether App Insights ingestion needs an Entra token (sets APPLICATIONINSIGHTS_AUTHENTICATION_STRING).')
param appInsightsEntraAuth bool = true

@description('deployment.environment reported in telemetry (POSTBUS_ENVIRONMENT).')
param deploymentEnvironment string

@description('Fewest replicas: 1, so a request never waits for a cold start.')
@minValue(1)
param minReplicas int = 1

@description('Most replicas.')
@minValue(1)
@maxValue(300)
param maxReplicas int = 5

@description('Concurrent requests per replica before Container Apps adds one (HTTP scale rule).')
@minValue(1)
param concurrentRequests int = 50

@description('CPU cores per replica.')
param cpu string = '0.5'

@description('Memory per replica (must match the CPU: 0.5 cores -> 1Gi).')
param memory string = '1Gi'

// The worker's health port, so the image's own HEALTHCHECK and the placeholder (ASP.NET Core's sample listens on
// 8080 and maps /healthz) fit this app as well.
var apiPort = 8080
var healthPath = '/healthz'
var placeholderImage = 'mcr.microsoft.com/dotnet/samples:aspnetapp'
// The Container Apps secret that holds the registry (a name, not a value).
var registrySecretName = 'api-clients'
var roles = {
  storageTableDataReader: '76199698-9eea-4c19-bc75-cec21354c6b6'
}

var telemetryAuthEnv = appInsightsEntraAuth ? [
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'Authorization=AAD;ClientId=${apiClientId}'
  }
] : []
var tokenEnv = empty(audiences) ? [] : [
  {
    name: 'POSTBUS_API_ENTRA_TENANT_ID'
    value: entraTenantId
  }
  {
    name: 'POSTBUS_API_AUDIENCES'
    value: audiences
  }
]
// Without a record table, an empty SQLite file in /tmp (the image's working directory is not writable by its
// user), so status still answers `queued` for what this replica accepted and 404 otherwise.
var recordEnv = [
  {
    name: 'POSTBUS_RECORD_URL'
    value: empty(recordUrl) ? 'sqlite:////tmp/postbus-records.db' : recordUrl
  }
]

resource app 'Microsoft.App/containerApps@2026-01-01' = {
  name: appName
  location: location
  // azd finds the app to deploy by this tag (azure.yaml service "api").
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${apiIdentityId}': {}
      '${pullIdentityId}': {}
    }
  }
  properties: {
    environmentId: environmentId
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: {
        external: true
        targetPort: apiPort
        transport: 'auto'
        // HTTPS only: plain HTTP is refused, not redirected, so a key is never sent in the clear twice.
        allowInsecure: false
        traffic: [
          {
            latestRevision: true
            weight: 100
          }
        ]
      }
      registries: [
        {
          server: registryLoginServer
          identity: pullIdentityId
        }
      ]
      // The registry: a Key Vault reference read with the API's own identity, or the secure parameter's value.
      secrets: [
        empty(clientsSecretUri) ? {
          name: registrySecretName
          value: empty(clientsJson) ? '{"clients": []}' : clientsJson
        } : {
          name: registrySecretName
          keyVaultUrl: clientsSecretUri
          identity: apiIdentityId
        }
      ]
      identitySettings: [
        {
          identity: apiIdentityId
          lifecycle: 'Main'
        }
        {
          identity: pullIdentityId
          lifecycle: 'None'
        }
      ]
    }
    template: {
      containers: [
        {
          name: 'api'
          image: empty(image) ? placeholderImage : image
          // The image's entrypoint is `postbus`; the worker runs `worker`, this app `api`.
          args: [
            'api'
          ]
          resources: {
            cpu: json(cpu)
            memory: memory
          }
          env: concat([
            {
              name: 'AZURE_CLIENT_ID'
              value: apiClientId
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
              name: 'POSTBUS_API_HOST'
              value: '0.0.0.0'
            }
            {
              name: 'POSTBUS_API_PORT'
              value: string(apiPort)
            }
            {
              name: 'POSTBUS_API_CLIENTS'
              secretRef: registrySecretName
            }
            {
              name: 'POSTBUS_SERVICE_NAME'
              value: 'postbus-api'
            }
            {
              name: 'POSTBUS_ENVIRONMENT'
              value: deploymentEnvironment
            }
            {
              name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
              value: appInsightsConnectionString
            }
          ], tokenEnv, recordEnv, telemetryAuthEnv)
          probes: [
            {
              type: 'Startup'
              httpGet: {
                path: healthPath
                port: apiPort
              }
              periodSeconds: 2
              failureThreshold: 30
            }
            {
              type: 'Liveness'
              httpGet: {
                path: healthPath
                port: apiPort
              }
              periodSeconds: 10
              timeoutSeconds: 3
              failureThreshold: 3
            }
            {
              // uvicorn answers only once the app has started (publisher open), so /healthz answering is readiness;
              // /readyz says the same with a reason, for operators, and the placeholder would fail it.
              type: 'Readiness'
              httpGet: {
                path: healthPath
                port: apiPort
              }
              periodSeconds: 5
              timeoutSeconds: 3
              failureThreshold: 3
            }
          ]
        }
      ]
      scale: {
        minReplicas: minReplicas
        maxReplicas: maxReplicas
        rules: [
          {
            name: 'http-concurrency'
            http: {
              metadata: {
                concurrentRequests: string(concurrentRequests)
              }
            }
          }
        ]
      }
    }
  }
}

resource recordAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = if (!empty(recordStorageAccountName)) {
  name: recordStorageAccountName
}

// Status reads only: the worker and the report consumer write the record, the API never does.
resource recordReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(recordStorageAccountName)) {
  name: guid(recordStorageAccountName, apiPrincipalId, roles.storageTableDataReader)
  scope: recordAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataReader)
    principalId: apiPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output appId string = app.id
output appName string = app.name
output url string = 'https://${app.properties.configuration.ingress.fqdn}'
