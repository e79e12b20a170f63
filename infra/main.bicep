// Postbus on Azure: `azd up` entry point. Creates the resource group and wires the local modules:
// identities -> monitoring -> messaging, email, registry -> worker (Container Apps + KEDA) -> alerts, workbook.
// Every module declares raw resources (no registry modules) so pycep and checkov can check all of it offline.
targetScope = 'subscription'

@description('azd environment name; names and tags every resource.')
@minLength(1)
@maxLength(64)
param environmentName string

@description('Azure region for the regional resources (ACS resources are global).')
@minLength(1)
param location string

@description('Id of the principal running azd (AZURE_PRINCIPAL_ID); used only when grantDeployerDataAccess is true.')
param principalId string = ''

@description('Type of that principal.')
@allowed([
  'User'
  'ServicePrincipal'
])
param principalType string = 'User'

@description('Dev only: give the deployer Service Bus Data Owner on the namespace (publish, peek the DLQ).')
param grantDeployerDataAccess bool = false

@description('Service Bus tier. Standard: 1,000 credits/s per namespace shared with every producer. Premium: dedicated messaging units.')
@allowed([
  'Standard'
  'Premium'
])
param serviceBusSku string = 'Standard'

@description('Premium messaging units.')
@allowed([
  1
  2
  4
  8
  16
])
param serviceBusPremiumCapacity int = 1

@description('Role of the KEDA scaler identity on the queue: DataReceiver (try first) or DataOwner (fallback if scaling never triggers).')
@allowed([
  'DataReceiver'
  'DataOwner'
])
param scalerRole string = 'DataReceiver'

@description('ACS data location (data at rest) for the email service, its domains and the Communication Service.')
param emailDataLocation string = 'United States'

@description('Custom sending domain (e.g. notify.contoso.com). Empty: only the Azure-managed domain (5/min, 10/hour, not raisable).')
param customEmailDomain string = ''

@description('Set once ACS has verified the custom domain records; links the domain and switches the senders to it.')
param customEmailDomainVerified bool = false

@description('Sender usernames to create on the custom domain: [{ username, displayName }].')
param customSenderUsernames array = []

@description('Sender aliases the events may use (alias -> username on the sending domain).')
param senderAliases object = {
  orders: 'DoNotReply'
  returns: 'DoNotReply'
  care: 'DoNotReply'
  permits: 'DoNotReply'
}

@description('Worker role on the Communication Service: the built-in Communication and Email Service Owner, or a custom role limited to the three actions ACS documents for Entra-authenticated sending (created here, at subscription scope).')
@allowed([
  'BuiltIn'
  'Custom'
])
param emailSenderRole string = 'BuiltIn'

@description('ACS send quota per minute for this subscription (custom domain default 30; Azure-managed 5). Raise it with support first.')
@minValue(1)
param acsQuotaPerMinute int = 30

@description('ACS send quota per hour for this subscription (custom domain default 100; Azure-managed 10).')
@minValue(1)
param acsQuotaPerHour int = 100

@description('Max worker replicas = ceil(ACS quota per second / per-replica send rate); see docs/deploy-azure.md.')
@minValue(1)
@maxValue(1000)
param workerMaxReplicas int = 2

@description('KEDA target: active messages per replica.')
@minValue(1)
param workerScaleMessageCount int = 100

@description('Concurrent sends per replica.')
@minValue(1)
param workerConcurrency int = 16

@description('Seconds the worker finishes in-flight work after SIGTERM; Container Apps waits this plus headroom.')
@minValue(1)
@maxValue(590)
param workerShutdownGraceSeconds int = 25

@description('True after the first `azd deploy` (SERVICE_WORKER_RESOURCE_EXISTS): keep the deployed image on re-provision.')
param workerExists bool = false

@description('Entra-only App Insights ingestion (the worker authenticates with its identity).')
param appInsightsDisableLocalAuth bool = true

@description('Email address for alerts; empty: no receiver.')
param alertEmail string = ''

@description('Active messages sustained for 15 minutes that raise the backlog alert.')
@minValue(1)
param backlogAlertThreshold int = 1000

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  application: 'postbus'
}
var queueName = 'notifications'
var workerAppName = '${abbrs.appContainerApps}worker-${resourceToken}'
var sloLatencyMs = 300000

// Narrower alternative to Communication and Email Service Owner (azure-infra.md section 13). One definition per
// subscription, shared by every environment in it.
resource emailSenderRoleDefinition 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (emailSenderRole == 'Custom') {
  name: guid(subscription().id, 'postbus-email-sender')
  properties: {
    roleName: 'Postbus Email Sender (${subscription().subscriptionId})'
    description: 'Send email through an Azure Communication Services resource with Entra ID (Postbus worker).'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.Communication/CommunicationServices/Read'
          'Microsoft.Communication/CommunicationServices/Write'
          'Microsoft.Communication/EmailServices/write'
        ]
        notActions: []
      }
    ]
    assignableScopes: [
      subscription().id
    ]
  }
}

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identities 'modules/identity.bicep' = {
  name: 'identities'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    prefix: abbrs.managedIdentityUserAssignedIdentities
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    workspaceName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    appInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    actionGroupName: '${abbrs.insightsActionGroups}postbus-${resourceToken}'
    disableLocalAuth: appInsightsDisableLocalAuth
    alertEmail: alertEmail
    workerPrincipalId: identities.outputs.workerPrincipalId
  }
}

module messaging 'modules/messaging.bicep' = {
  name: 'messaging'
  scope: rg
  params: {
    location: location
    tags: tags
    namespaceName: '${abbrs.serviceBusNamespaces}${resourceToken}'
    sku: serviceBusSku
    premiumCapacity: serviceBusPremiumCapacity
    queueName: queueName
    workspaceId: monitoring.outputs.workspaceId
    workerPrincipalId: identities.outputs.workerPrincipalId
    scalerPrincipalId: identities.outputs.scalerPrincipalId
    scalerRole: scalerRole
    producerPrincipalId: identities.outputs.producerPrincipalId
    deployerPrincipalId: grantDeployerDataAccess ? principalId : ''
    deployerPrincipalType: principalType
  }
}

module email 'modules/email.bicep' = {
  name: 'email'
  scope: rg
  params: {
    tags: tags
    emailServiceName: '${abbrs.communicationEmailServices}${resourceToken}'
    communicationServiceName: '${abbrs.communicationServices}${resourceToken}'
    dataLocation: emailDataLocation
    customDomainName: customEmailDomain
    customDomainVerified: customEmailDomainVerified
    senderUsernames: customSenderUsernames
    senderAliases: senderAliases
    workerPrincipalId: identities.outputs.workerPrincipalId
    customSenderRoleDefinitionId: (emailSenderRole == 'Custom') ? emailSenderRoleDefinition.id : ''
  }
}

module registry 'modules/registry.bicep' = {
  name: 'registry'
  scope: rg
  params: {
    location: location
    tags: tags
    registryName: '${abbrs.containerRegistryRegistries}${resourceToken}'
    pullPrincipalId: identities.outputs.pullPrincipalId
  }
}

module workerImage 'modules/fetch-image.bicep' = {
  name: 'worker-image'
  scope: rg
  params: {
    appName: workerAppName
    exists: workerExists
  }
}

module worker 'modules/worker.bicep' = {
  name: 'worker'
  scope: rg
  params: {
    location: location
    tags: tags
    environmentName: '${abbrs.appManagedEnvironments}${resourceToken}'
    appName: workerAppName
    workspaceId: monitoring.outputs.workspaceId
    image: workerImage.outputs.image
    registryLoginServer: registry.outputs.loginServer
    workerIdentityId: identities.outputs.workerId
    workerClientId: identities.outputs.workerClientId
    scalerIdentityId: identities.outputs.scalerId
    pullIdentityId: identities.outputs.pullId
    serviceBusNamespaceName: messaging.outputs.namespaceName
    serviceBusFullyQualifiedNamespace: messaging.outputs.fullyQualifiedNamespace
    queueName: messaging.outputs.queueName
    acsEndpoint: email.outputs.endpoint
    senders: '{${join(email.outputs.senderEntries, ',')}}'
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    appInsightsEntraAuth: appInsightsDisableLocalAuth
    deploymentEnvironment: environmentName
    maxReplicas: workerMaxReplicas
    scaleMessageCount: workerScaleMessageCount
    concurrency: workerConcurrency
    quotaPerMinute: acsQuotaPerMinute
    quotaPerHour: acsQuotaPerHour
    shutdownGraceSeconds: workerShutdownGraceSeconds
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    namespaceId: messaging.outputs.namespaceId
    queueName: messaging.outputs.queueName
    appInsightsId: monitoring.outputs.appInsightsId
    actionGroupId: monitoring.outputs.actionGroupId
    backlogThreshold: backlogAlertThreshold
    sloLatencyMs: sloLatencyMs
    metricAlertPrefix: abbrs.insightsMetricAlerts
    logAlertPrefix: abbrs.insightsScheduledQueryRules
  }
}

module dashboard 'modules/dashboard.bicep' = {
  name: 'dashboard'
  scope: rg
  params: {
    location: location
    tags: tags
    displayName: 'Postbus pipeline (${environmentName})'
    appInsightsId: monitoring.outputs.appInsightsId
    namespaceId: messaging.outputs.namespaceId
    queueName: messaging.outputs.queueName
    workerAppId: worker.outputs.appId
    sloLatencyMs: sloLatencyMs
  }
}

// azd reads these into .azure/<env>/.env.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_CONTAINER_REGISTRY_ENDPOINT string = registry.outputs.loginServer
output AZURE_CONTAINER_REGISTRY_NAME string = registry.outputs.registryName
output AZURE_CONTAINER_ENVIRONMENT_NAME string = worker.outputs.environmentName
output SERVICE_WORKER_NAME string = worker.outputs.appName
output POSTBUS_SERVICEBUS_NAMESPACE string = messaging.outputs.fullyQualifiedNamespace
output POSTBUS_QUEUE string = messaging.outputs.queueName
output POSTBUS_ACS_ENDPOINT string = email.outputs.endpoint
output POSTBUS_SENDING_DOMAIN string = email.outputs.sendingDomain
output POSTBUS_PRODUCER_IDENTITY_ID string = identities.outputs.producerId
output POSTBUS_PRODUCER_CLIENT_ID string = identities.outputs.producerClientId
output POSTBUS_EMAIL_DOMAIN_RECORDS object = email.outputs.customDomainVerificationRecords
output POSTBUS_WORKBOOK_ID string = dashboard.outputs.workbookId
