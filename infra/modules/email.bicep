// ACS Email: the Email Communication Service, its domains, the Communication Service the worker sends through,
// the worker's role on it, the send quota that follows from the domain in use, and the send and delivery logs.
//
// The Azure-managed domain (DoNotReply@<guid>.azurecomm.net) is always created and linked, so a fresh deployment can
// send at once - but only at 5/min and 10/hour, and that quota cannot be raised. A customer-managed domain is
// created when customDomainName is set; it outputs the SPF/DKIM/DKIM2/DMARC records to publish. It can be linked
// (and used by the worker) only after ACS has verified those records: set customDomainVerified=true and provision
// again. Its default limits are 30/min and 100/hour; support can raise them (raisedQuotaPerMinute/PerHour). Sender
// usernames other than DoNotReply are created only once the domain is verified and its limits raised, because ACS
// refuses them on a domain that still has the default limits. docs/deploy-azure.md walks through it.

@description('Tags applied to every resource.')
param tags object

@description('Email Communication Service name.')
param emailServiceName string

@description('Communication Service name (its host name becomes POSTBUS_ACS_ENDPOINT).')
param communicationServiceName string

@description('Where ACS stores data at rest. The email service, its domains and the Communication Service must share it.')
param dataLocation string = 'United States'

@description('Custom sending domain, e.g. notify.contoso.com. Empty: Azure-managed domain only.')
param customDomainName string = ''

@description('Set to true once ACS shows the custom domain (and SPF, DKIM, DKIM2) as verified; links it and points the worker at it.')
param customDomainVerified bool = false

@description('Extra sender usernames on the custom domain, e.g. [{ username: \'orders\', displayName: \'Contoso Orders\' }]. Created only once the domain is verified and its limits raised (ACS refuses them before); never on the Azure-managed domain.')
param senderUsernames array = []

@description('Send quota per minute that ACS support granted for the verified custom domain. 0: the default limits.')
@minValue(0)
param raisedQuotaPerMinute int = 0

@description('Send quota per hour that ACS support granted for the verified custom domain. 0: the default limits.')
@minValue(0)
param raisedQuotaPerHour int = 0

@description('Log Analytics workspace that receives the email send and delivery logs.')
param workspaceId string

@description('Sender aliases the events may name (alias -> username); each becomes <username>@<sending domain> in POSTBUS_SENDERS.')
param senderAliases object = {
  orders: 'DoNotReply'
  returns: 'DoNotReply'
  care: 'DoNotReply'
  permits: 'DoNotReply'
}

@description('Principal id of the worker identity that sends email.')
param workerPrincipalId string

@description('Resource id of the narrower custom "Postbus Email Sender" role (main.bicep, emailSenderRole=Custom). Empty: the built-in Communication and Email Service Owner role.')
param customSenderRoleDefinitionId string = ''

// Built-in role (a fixed GUID, the same in every tenant).
var roles = {
  communicationAndEmailServiceOwner: '09976791-48a7-449e-bb21-39d1a415f350'
}
var builtInSenderRoleId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.communicationAndEmailServiceOwner)
var useCustomDomain = !empty(customDomainName)
var linkCustomDomain = useCustomDomain && customDomainVerified
// Raised limits are granted for a verified custom domain; they mean nothing for the Azure-managed one.
var limitsRaised = linkCustomDomain && (raisedQuotaPerMinute > 0) && (raisedQuotaPerHour > 0)
// ACS's published sending limits per domain kind (the quota is per subscription, shared by every replica).
var sendingLimits = {
  azureManaged: {
    perMinute: 5
    perHour: 10
  }
  customDefault: {
    perMinute: 30
    perHour: 100
  }
}
var quotaPerMinute = limitsRaised ? raisedQuotaPerMinute : (linkCustomDomain ? sendingLimits.customDefault.perMinute : sendingLimits.azureManaged.perMinute)
var quotaPerHour = limitsRaised ? raisedQuotaPerHour : (linkCustomDomain ? sendingLimits.customDefault.perHour : sendingLimits.azureManaged.perHour)

resource emailService 'Microsoft.Communication/emailServices@2025-09-01' = {
  name: emailServiceName
  location: 'global'
  tags: tags
  properties: {
    dataLocation: dataLocation
  }
}

resource managedDomain 'Microsoft.Communication/emailServices/domains@2025-09-01' = {
  parent: emailService
  // The name is fixed by ACS for Azure-managed domains.
  name: 'AzureManagedDomain'
  location: 'global'
  tags: tags
  properties: {
    domainManagement: 'AzureManaged'
    userEngagementTracking: 'Disabled'
  }
}

resource customDomain 'Microsoft.Communication/emailServices/domains@2025-09-01' = if (useCustomDomain) {
  parent: emailService
  name: useCustomDomain ? customDomainName : 'unused'
  location: 'global'
  tags: tags
  properties: {
    domainManagement: 'CustomerManaged'
    // Open and click tracking rewrites transactional links; leave it off.
    userEngagementTracking: 'Disabled'
  }
}

// Only on a verified custom domain with raised limits: ACS refuses custom sender usernames before that, which would
// fail the whole provisioning run.
resource customSenders 'Microsoft.Communication/emailServices/domains/senderUsernames@2025-09-01' = [for s in (limitsRaised ? senderUsernames : []): {
  parent: customDomain
  name: s.username
  properties: {
    username: s.username
    displayName: s.displayName
  }
}]

resource communicationService 'Microsoft.Communication/communicationServices@2025-09-01' = {
  name: communicationServiceName
  location: 'global'
  tags: tags
  properties: {
    dataLocation: dataLocation
    // Entra only: the worker authenticates with its managed identity, so no access keys.
    disableLocalAuth: true
    linkedDomains: linkCustomDomain ? [
      managedDomain.id
      customDomain.id
    ] : [
      managedDomain.id
    ]
  }
}

// The SDK path (EmailClient + DefaultAzureCredential) is documented without a named role; both roles are the ones
// documented for Entra-authenticated sending. Confirm on first deploy.
resource workerEmailSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(communicationService.id, workerPrincipalId, empty(customSenderRoleDefinitionId) ? builtInSenderRoleId : customSenderRoleDefinitionId)
  scope: communicationService
  properties: {
    roleDefinitionId: empty(customSenderRoleDefinitionId) ? builtInSenderRoleId : customSenderRoleDefinitionId
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Send and delivery logs (ACSEmailSendMailOperational, ACSEmailStatusUpdateOperational, ...): ACS writes them to its
// own resource-specific tables, so there is no destination-type choice to make here.
resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: communicationService
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        category: 'EmailSendMailOperational'
        enabled: true
      }
      {
        category: 'EmailStatusUpdateOperational'
        enabled: true
      }
      {
        category: 'EmailUserEngagementOperational'
        enabled: true
      }
    ]
  }
}

var sendingDomain = linkCustomDomain ? customDomain.properties.mailFromSenderDomain : managedDomain.properties.mailFromSenderDomain

output communicationServiceId string = communicationService.id
output communicationServiceName string = communicationService.name
output endpoint string = 'https://${communicationService.properties.hostName}'
output sendingDomain string = sendingDomain
output managedDomainMailFrom string = 'DoNotReply@${managedDomain.properties.mailFromSenderDomain}'
// '"alias":"user@domain"' pairs; main.bicep joins them into the POSTBUS_SENDERS JSON object.
output senderEntries array = [for a in items(senderAliases): '"${a.key}":"${a.value}@${sendingDomain}"']
// DNS records to publish for the custom domain: Domain (TXT ownership), SPF (TXT), DKIM and DKIM2 (CNAME), DMARC (TXT).
output customDomainVerificationRecords object = useCustomDomain ? customDomain.properties.verificationRecords : {}
// The quota the worker paces itself to: that of the domain it sends from.
output quotaPerMinute int = quotaPerMinute
output quotaPerHour int = quotaPerHour
output sendingDomainKind string = linkCustomDomain ? 'CustomerManaged' : 'AzureManaged'
output senderUsernamesCreated bool = limitsRaised
