// Postbus on Azure: `azd up` entry point. Creates the resource group and wires the local modules:
// identities -> monitoring -> (network) -> messaging, email, registry -> worker (Container Apps + KEDA) -> alerts,
// workbook. Every module declares raw resources (no registry modules) so pycep and checkov can check all of it
// offline. To add a resource: a module under modules/, its diagnostic setting to the workspace, its role assignments
// next to it, and - for private networking - one more private-endpoint.bicep call below.
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

@description('Service Bus tier. Standard: 1,000 credits/s per namespace shared with every producer. Premium: dedicated messaging units (forced by privateNetworking).')
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

@description('Role of the KEDA scaler identity on the queue: DataReceiver (the least that reads the message count with Entra) or DataOwner (queue-scoped fallback).')
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

@description('Sender usernames to create on the custom domain: [{ username, displayName }]. Created only once the domain is verified and its limits raised (acsRaisedQuotaPerMinute/PerHour), because ACS refuses them before.')
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

@description('Send quota per minute that ACS support granted for the verified custom domain. 0: the sending domain\'s default (Azure-managed 5, custom 30); the worker gets the quota of the domain it sends from.')
@minValue(0)
param acsRaisedQuotaPerMinute int = 0

@description('Send quota per hour that ACS support granted for the verified custom domain. 0: the default (Azure-managed 10, custom 100).')
@minValue(0)
param acsRaisedQuotaPerHour int = 0

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

@description('True after the first `azd deploy` of the ingest API (SERVICE_API_RESOURCE_EXISTS): keep its image on re-provision.')
param apiExists bool = false

@description('Key Vault secret URI of the ingest API\'s client registry (docs/api.md). Empty: apiClients.')
param apiClientsSecretUri string = ''

@description('The ingest API\'s client registry JSON, when it is not in Key Vault. Both empty: every call is refused.')
@secure()
param apiClients string

@description('Token audiences the ingest API accepts, as a JSON list: its app registration\'s Application ID URI and client id. Empty: API keys only.')
param apiAudiences string = ''

@description('Most ingest API replicas (it scales on HTTP concurrency from 1).')
@minValue(1)
@maxValue(300)
param apiMaxReplicas int = 5

@description('Entra-only App Insights ingestion (the worker authenticates with its identity).')
param appInsightsDisableLocalAuth bool = true

@description('Email address for alerts; empty: no receiver, and alerts only show in the portal (azd warns before provisioning).')
param alertEmail string = ''

@description('Active messages sustained for 15 minutes that raise the backlog alert. 0: what the sending domain\'s quota drains in 15 minutes.')
@minValue(0)
param backlogAlertThreshold int = 0

@description('Private networking: Service Bus (Premium) and the registry (Premium) get private endpoints in a new VNet that the Container Apps environment joins, and Service Bus refuses public traffic. Producers must then publish from inside the network. See docs/deploy-azure.md for what it costs. Set at creation: an existing environment cannot move into a VNet.')
param privateNetworking bool = false

// --- Claim check (large attachments) --------------------------------------------------------------------------------
@description('Days a claim-checked attachment is kept after its last publish (lifecycle rule); at least the delivery record retention.')
@minValue(2)
@maxValue(3650)
param claimCheckRetentionDays int = 30

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  application: 'postbus'
}
var queueName = 'notifications'
var workerAppName = '${abbrs.appContainerApps}worker-${resourceToken}'
var apiAppName = '${abbrs.appContainerApps}api-${resourceToken}'
var sloLatencyMs = 300000
// Private endpoints need Premium Service Bus and a Premium registry.
var effectiveServiceBusSku = privateNetworking ? 'Premium' : serviceBusSku
var registryTier = privateNetworking ? 'Premium' : 'Standard'

// Narrower alternative to Communication and Email Service Owner. One definition per
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

module network 'modules/network.bicep' = if (privateNetworking) {
  name: 'network'
  scope: rg
  params: {
    location: location
    tags: tags
    vnetName: '${abbrs.networkVirtualNetworks}${resourceToken}'
    nsgName: '${abbrs.networkNetworkSecurityGroups}${resourceToken}'
  }
}

module messaging 'modules/messaging.bicep' = {
  name: 'messaging'
  scope: rg
  params: {
    location: location
    tags: tags
    namespaceName: '${abbrs.serviceBusNamespaces}${resourceToken}'
    sku: effectiveServiceBusSku
    premiumCapacity: serviceBusPremiumCapacity
    privateOnly: privateNetworking
    queueName: queueName
    workspaceId: monitoring.outputs.workspaceId
    workerPrincipalId: identities.outputs.workerPrincipalId
    scalerPrincipalId: identities.outputs.scalerPrincipalId
    scalerRole: scalerRole
    producerPrincipalId: identities.outputs.producerPrincipalId
    apiPrincipalId: identities.outputs.apiPrincipalId
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
    raisedQuotaPerMinute: acsRaisedQuotaPerMinute
    raisedQuotaPerHour: acsRaisedQuotaPerHour
    senderAliases: senderAliases
    workspaceId: monitoring.outputs.workspaceId
    workerPrincipalId: identities.outputs.workerPrincipalId
    customSenderRoleDefinitionId: (emailSenderRole == 'Custom') ? emailSenderRoleDefinition.id : ''
  }
}

// The delivery record: a table for the worker, and the container where Event Grid dead-letters report events.
module records 'modules/records.bicep' = {
  name: 'records'
  scope: rg
  params: {
    location: location
    tags: tags
    storageAccountName: '${abbrs.storageStorageAccounts}${resourceToken}'
    workerPrincipalId: identities.outputs.workerPrincipalId
    workspaceId: monitoring.outputs.workspaceId
  }
}

// ACS delivery reports: Communication Service -> Event Grid system topic -> the reports queue.
module events 'modules/events.bicep' = {
  name: 'events'
  scope: rg
  params: {
    tags: tags
    topicName: '${abbrs.eventGridSystemTopics}acs-${resourceToken}'
    communicationServiceName: email.outputs.communicationServiceName
    namespaceName: messaging.outputs.namespaceName
    reportsQueueName: messaging.outputs.reportsQueueName
    storageAccountName: records.outputs.accountName
    deadLetterContainerName: records.outputs.deadLetterContainerName
  }
}

module registry 'modules/registry.bicep' = {
  name: 'registry'
  scope: rg
  params: {
    location: location
    tags: tags
    registryName: '${abbrs.containerRegistryRegistries}${resourceToken}'
    registrySku: registryTier
    pullPrincipalId: identities.outputs.pullPrincipalId
  }
}

module serviceBusEndpoint 'modules/private-endpoint.bicep' = if (privateNetworking) {
  name: 'servicebus-endpoint'
  scope: rg
  params: {
    location: location
    tags: tags
    name: '${abbrs.networkPrivateEndpoints}sb-${resourceToken}'
    subnetId: network.?outputs.endpointsSubnetId ?? ''
    targetId: messaging.outputs.namespaceId
    groupId: 'namespace'
    dnsZoneId: network.?outputs.zoneIds.serviceBus ?? ''
  }
}

module registryEndpoint 'modules/private-endpoint.bicep' = if (privateNetworking) {
  name: 'registry-endpoint'
  scope: rg
  params: {
    location: location
    tags: tags
    name: '${abbrs.networkPrivateEndpoints}cr-${resourceToken}'
    subnetId: network.?outputs.endpointsSubnetId ?? ''
    targetId: registry.outputs.registryId
    groupId: 'registry'
    dnsZoneId: network.?outputs.zoneIds.registry ?? ''
  }
}

// Claim check: a private container in the delivery record's Storage account, a lifecycle rule, producer write and
// worker read (modules/claimcheck.bicep says why each is enough).
module claimCheck 'modules/claimcheck.bicep' = {
  name: 'claim-check'
  scope: rg
  params: {
    storageAccountName: records.outputs.accountName
    retentionDays: claimCheckRetentionDays
    producerPrincipalId: identities.outputs.producerPrincipalId
    workerPrincipalId: identities.outputs.workerPrincipalId
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
    infrastructureSubnetId: network.?outputs.appsSubnetId ?? ''
    // The ingest API's HTTPS ingress.
    publicIngress: true
    image: workerImage.outputs.image
    registryLoginServer: registry.outputs.loginServer
    workerIdentityId: identities.outputs.workerId
    workerClientId: identities.outputs.workerClientId
    scalerIdentityId: identities.outputs.scalerId
    pullIdentityId: identities.outputs.pullId
    serviceBusNamespaceName: messaging.outputs.namespaceName
    serviceBusFullyQualifiedNamespace: messaging.outputs.fullyQualifiedNamespace
    queueName: messaging.outputs.queueName
    criticalQueueName: messaging.outputs.criticalQueueName
    bulkQueueName: messaging.outputs.bulkQueueName
    reportsQueueName: messaging.outputs.reportsQueueName
    recordUrl: records.outputs.recordUrl
    acsEndpoint: email.outputs.endpoint
    senders: '{${join(email.outputs.senderEntries, ',')}}'
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    appInsightsEntraAuth: appInsightsDisableLocalAuth
    deploymentEnvironment: environmentName
    maxReplicas: workerMaxReplicas
    scaleMessageCount: workerScaleMessageCount
    concurrency: workerConcurrency
    // The quota follows the domain the worker sends from (email.bicep), so the first smoke test on the
    // Azure-managed domain paces itself to 5/min and 10/hour instead of running into 429s.
    quotaPerMinute: email.outputs.quotaPerMinute
    quotaPerHour: email.outputs.quotaPerHour
    shutdownGraceSeconds: workerShutdownGraceSeconds
    attachmentStoreUrl: claimCheck.outputs.url
  }
}

module apiImage 'modules/fetch-image.bicep' = {
  name: 'api-image'
  scope: rg
  params: {
    appName: apiAppName
    exists: apiExists
  }
}

module api 'modules/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    location: location
    tags: tags
    appName: apiAppName
    environmentId: worker.outputs.environmentId
    image: apiImage.outputs.image
    registryLoginServer: registry.outputs.loginServer
    apiIdentityId: identities.outputs.apiId
    apiClientId: identities.outputs.apiClientId
    apiPrincipalId: identities.outputs.apiPrincipalId
    pullIdentityId: identities.outputs.pullId
    serviceBusFullyQualifiedNamespace: messaging.outputs.fullyQualifiedNamespace
    queueName: messaging.outputs.queueName
    criticalQueueName: messaging.outputs.criticalQueueName
    bulkQueueName: messaging.outputs.bulkQueueName
    entraTenantId: tenant().tenantId
    audiences: apiAudiences
    clientsSecretUri: apiClientsSecretUri
    clientsJson: apiClients
    // The API reads status from the same record the worker writes.
    recordUrl: records.outputs.recordUrl
    recordStorageAccountName: records.outputs.accountName
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    appInsightsEntraAuth: appInsightsDisableLocalAuth
    deploymentEnvironment: environmentName
    maxReplicas: apiMaxReplicas
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
    criticalQueueName: messaging.outputs.criticalQueueName
    bulkQueueName: messaging.outputs.bulkQueueName
    appInsightsId: monitoring.outputs.appInsightsId
    workspaceId: monitoring.outputs.workspaceId
    actionGroupId: monitoring.outputs.actionGroupId
    quotaPerMinute: email.outputs.quotaPerMinute
    quotaPerHour: email.outputs.quotaPerHour
    backlogThresholdOverride: backlogAlertThreshold
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
    criticalQueueName: messaging.outputs.criticalQueueName
    bulkQueueName: messaging.outputs.bulkQueueName
    workerAppId: worker.outputs.appId
    apiAppId: api.outputs.appId
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
output SERVICE_API_NAME string = api.outputs.appName
output POSTBUS_API_URL string = api.outputs.url
output POSTBUS_API_IDENTITY_CLIENT_ID string = identities.outputs.apiClientId
output POSTBUS_SERVICEBUS_NAMESPACE string = messaging.outputs.fullyQualifiedNamespace
output POSTBUS_QUEUE string = messaging.outputs.queueName
// Producers and the CLI route each event to its lane's queue when lanes are on.
output POSTBUS_LANES string = 'true'
output POSTBUS_QUEUE_CRITICAL string = messaging.outputs.criticalQueueName
output POSTBUS_QUEUE_BULK string = messaging.outputs.bulkQueueName
output POSTBUS_REPORTS_QUEUE string = messaging.outputs.reportsQueueName
output POSTBUS_RECORD_URL string = records.outputs.recordUrl
output POSTBUS_ACS_ENDPOINT string = email.outputs.endpoint
output POSTBUS_SENDING_DOMAIN string = email.outputs.sendingDomain
output POSTBUS_PRODUCER_IDENTITY_ID string = identities.outputs.producerId
output POSTBUS_PRODUCER_CLIENT_ID string = identities.outputs.producerClientId
output POSTBUS_ATTACHMENT_STORE_URL string = claimCheck.outputs.url
output POSTBUS_EMAIL_DOMAIN_RECORDS object = email.outputs.customDomainVerificationRecords
output POSTBUS_WORKBOOK_ID string = dashboard.outputs.workbookId
// What the worker paces itself to, derived from the sending domain (see acsRaisedQuotaPerMinute).
output POSTBUS_QUOTA_PER_MINUTE int = email.outputs.quotaPerMinute
output POSTBUS_QUOTA_PER_HOUR int = email.outputs.quotaPerHour
output POSTBUS_SENDING_DOMAIN_KIND string = email.outputs.sendingDomainKind
output POSTBUS_ALERT_RECEIVERS int = monitoring.outputs.actionGroupReceivers
