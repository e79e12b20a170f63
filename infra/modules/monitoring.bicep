// Log Analytics, workspace-based Application Insights and the action group every alert notifies.

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Log Analytics workspace name.')
param workspaceName string

@description('Application Insights component name.')
param appInsightsName string

@description('Action group name.')
param actionGroupName string

@description('Days of log retention (PerGB2018 includes 31 days at no extra retention cost).')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

@description('Entra-only telemetry ingestion. The worker then authenticates with its identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING) and holds Monitoring Metrics Publisher.')
param disableLocalAuth bool = true

@description('Where alerts are emailed. Empty: the action group has no receivers, so alerts only show in the portal (azd warns before provisioning; the output says so).')
param alertEmail string = ''

@description('Principal id of the worker identity (granted Monitoring Metrics Publisher when local auth is disabled).')
param workerPrincipalId string

var roles = {
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource workspace 'Microsoft.OperationalInsights/workspaces@2025-07-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      disableLocalAuth: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    IngestionMode: 'LogAnalytics'
    DisableLocalAuth: disableLocalAuth
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}

resource workerTelemetryPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (disableLocalAuth) {
  name: guid(appInsights.id, workerPrincipalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'postbus'
    enabled: true
    emailReceivers: empty(alertEmail) ? [] : [
      {
        name: 'on-call'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

output workspaceId string = workspace.id
output workspaceName string = workspace.name
output appInsightsId string = appInsights.id
output appInsightsName string = appInsights.name
// Not a secret: an ingestion endpoint plus the instrumentation key, which only routes telemetry. With local auth
// disabled, ingestion also needs the worker's Entra token.
output appInsightsConnectionString string = appInsights.properties.ConnectionString
output actionGroupId string = actionGroup.id
// 0 means every alert fires into the void: azd's preprovision hook warns, and main.bicep passes this on as an output.
output actionGroupReceivers int = empty(alertEmail) ? 0 : 1
