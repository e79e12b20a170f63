// Alerts on the pipeline's failure signals. The backlog alert watches the queue (Service Bus platform metric); log
// alerts query the worker's telemetry in Application Insights (meter `postbus`, table customMetrics; exceptions
// table), and the stalled-worker alert joins the queue's metrics with the workers' heartbeat in the workspace.

@description('Azure region for the log alerts (metric alerts are global).')
param location string

@description('Tags applied to every alert.')
param tags object

@description('Service Bus namespace resource id.')
param namespaceId string

@description('Queue of the normal lane (Service Bus metric dimension EntityName).')
param queueName string

@description('Queue of the critical lane.')
param criticalQueueName string

@description('Queue of the bulk lane.')
param bulkQueueName string

@description('Minutes the critical lane\'s queue may stay non-empty before its alert fires: critical mail is sent within seconds, so a queue that never empties for this long means it is stuck.')
@allowed([
  1
  5
  15
])
param criticalBacklogMinutes int = 5

@description('Application Insights component resource id.')
param appInsightsId string

@description('Log Analytics workspace id: holds the namespace metrics (AzureMetrics) and, behind Application Insights, the workers\' metrics (AppMetrics).')
param workspaceId string

@description('Action group every alert notifies.')
param actionGroupId string

@description('ACS send quota per minute of the sending domain (email.bicep): sizes the backlog alert.')
@minValue(1)
param quotaPerMinute int

@description('ACS send quota per hour of the sending domain (email.bicep).')
@minValue(1)
param quotaPerHour int

@description('Active messages above which a backlog that lasts 15 minutes alerts. 0: what the quota drains in 15 minutes.')
@minValue(0)
param backlogThresholdOverride int = 0

@description('Minutes messages may wait with no worker running before the stalled-worker alert fires. Above KEDA\'s 30 s polling plus a cold start; low enough to page within minutes.')
@minValue(5)
param stalledMinutes int = 10

@description('Throttle (HTTP 429) events per 5 minutes above which to alert. The rate gate should keep them rare.')
param throttleThreshold int = 20

@description('End-to-end latency SLO: share of messages accepted by ACS within sloLatencyMs of publishing, in thousandths (970 = 97%).')
@minValue(1)
@maxValue(1000)
param sloTargetPermille int = 970

@description('End-to-end latency SLO bound in milliseconds (5 minutes).')
param sloLatencyMs int = 300000

@description('Bounce + failed share of ACS delivery reports over an hour above which to alert, in thousandths (20 = 2%). ACS limits senders whose bounce rate stays high.')
@minValue(1)
@maxValue(1000)
param bounceAlertPermille int = 20

@description('Delivery reports an hour must hold before the bounce and delivery-SLO alerts judge a share (a handful of sends says little).')
@minValue(1)
param minimumReports int = 20
@description('Share of the ingest API\'s requests, in percent, answered with a 5xx over 5 minutes above which to alert.')
@minValue(1)
@maxValue(100)
param api5xxPercent int = 5

@description('95th percentile of the ingest API\'s request duration, in milliseconds over 5 minutes, above which to alert.')
@minValue(1)
param apiP95Ms int = 1000

@description('Fewest requests in the window before the API alerts judge it (a few slow or failed calls at night page nobody).')
@minValue(1)
param apiMinRequests int = 20

@description('Resource-name prefix for metric alerts.')
param metricAlertPrefix string = 'ma-'

@description('Resource-name prefix for log alerts.')
param logAlertPrefix string = 'sqr-'

// A backlog the quota could not drain in 15 minutes: the per-minute limit x 15, or a quarter of the hourly one if that
// binds (the Azure-managed domain's 10/hour gives 2, a default custom domain's 100/hour 25).
var backlogThreshold = (backlogThresholdOverride > 0) ? backlogThresholdOverride : max(1, min((quotaPerMinute * 15), (quotaPerHour / 4)))

// Minimum over the window: the alert fires only if the backlog never dropped below the threshold for 15 minutes,
// so a spike that is draining at the quota does not page anyone until it stops draining.
resource backlogAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${metricAlertPrefix}${queueName}-backlog'
  location: 'global'
  tags: tags
  properties: {
    description: 'Normal lane: active messages stayed above the threshold for 15 minutes: workers are stuck, scaled to zero, or the ACS quota is too small for the load.'
    severity: 2
    enabled: true
    scopes: [
      namespaceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'BacklogAboveThreshold'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'ActiveMessages'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                queueName
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: backlogThreshold
          timeAggregation: 'Minimum'
        }
      ]
    }
    autoMitigate: true
    actions: [
      {
        actionGroupId: actionGroupId
      }
    ]
  }
}

// The bulk lane drains last by design, so its backlog alert has the same bound as the normal lane's.
resource bulkBacklogAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${metricAlertPrefix}${bulkQueueName}-backlog'
  location: 'global'
  tags: tags
  properties: {
    description: 'Bulk lane: active messages stayed above the threshold for 15 minutes: workers are stuck, scaled to zero, or the ACS quota is too small for the load.'
    severity: 2
    enabled: true
    scopes: [
      namespaceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'BacklogAboveThreshold'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'ActiveMessages'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                bulkQueueName
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: backlogThreshold
          timeAggregation: 'Minimum'
        }
      ]
    }
    autoMitigate: true
    actions: [
      {
        actionGroupId: actionGroupId
      }
    ]
  }
}

// The critical lane's own, tighter alert. Service Bus has no metric of a message's age; a queue whose minimum
// active count stayed above zero for the whole window has had a message waiting at least that long.
resource criticalBacklogAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${metricAlertPrefix}${criticalQueueName}-backlog'
  location: 'global'
  tags: tags
  properties: {
    description: 'Critical lane: its queue has not been empty for ${criticalBacklogMinutes} minutes. Codes and password resets are waiting: workers are stuck or scaled to zero, or critical traffic alone exceeds the ACS quota.'
    severity: 1
    enabled: true
    scopes: [
      namespaceId
    ]
    evaluationFrequency: 'PT1M'
    windowSize: 'PT${criticalBacklogMinutes}M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'CriticalNeverEmptied'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'ActiveMessages'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                criticalQueueName
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Minimum'
        }
      ]
    }
    autoMitigate: true
    actions: [
      {
        actionGroupId: actionGroupId
      }
    ]
  }
}

// New dead letters, by reason. A metric alert on the queue's DeadletteredMessages count fires once and stays fired
// while the dead-letter queue holds anything, so later dead letters never notify; the worker's counter of dead
// letters it made is a rate. Split by reason: a second cause fires its own alert while the first is still open.
resource deadLetterAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${logAlertPrefix}postbus-dead-letters'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Postbus: new dead letters'
    description: 'The worker dead-lettered messages in the last 5 minutes (one alert per reason). Read the reason and its description (postbus dlq list --summary, or the workbook), fix the cause, then replay.'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: '''
customMetrics
| where name == "postbus.deadletters"
| extend reason = tostring(customDimensions.reason)
| summarize deadLetters = sum(valueSum) by reason
'''
          timeAggregation: 'Total'
          metricMeasureColumn: 'deadLetters'
          dimensions: [
            {
              name: 'reason'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroupId
      ]
    }
  }
}

// Messages wait and no worker runs: the scaler cannot read the queue (role, namespace name), the image cannot be
// pulled, or every replica crashes. Without this, the first signal would be the backlog alert - which needs a backlog
// the quota could not drain in 15 minutes - or nothing at all, since the latency alert has no data when nothing is
// sent. Every running worker exports postbus.breaker.state once a minute, so its absence means no worker; the
// queue's ActiveMessages comes from the namespace diagnostic setting (AzureMetrics holds it without the entity
// dimension, so it is the namespace's total: the worker consumes every queue in the namespace).
resource stalledAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${logAlertPrefix}postbus-messages-waiting-no-worker'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Postbus: messages waiting, no worker running'
    description: 'Messages have waited in the queue for the whole window while no worker replica reported in: scaling never started or every replica fails. Check the replicas panel and the Container Apps system logs (KEDA errors), then the scaler role (docs/deploy-azure.md).'
    severity: 1
    enabled: true
    scopes: [
      workspaceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT${stalledMinutes}M'
    criteria: {
      allOf: [
        {
          query: replace(replace('''
let waiting = toscalar(AzureMetrics
    | where TimeGenerated > ago(__WINDOW__)
    | where _ResourceId =~ "__NAMESPACE_ID__" and MetricName == "ActiveMessages"
    | summarize min(Minimum));
let workers = toscalar(AppMetrics
    | where TimeGenerated > ago(__WINDOW__)
    | where Name == "postbus.breaker.state"
    | count);
print waiting = coalesce(waiting, 0.0), workers
| where waiting > 0 and workers == 0
''', '__NAMESPACE_ID__', namespaceId), '__WINDOW__', '${stalledMinutes}m')
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroupId
      ]
    }
  }
}

resource throttleAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${logAlertPrefix}postbus-throttling'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Postbus: ACS throttling (HTTP 429)'
    description: 'ACS answered 429 more often than expected: the quota is shared with another sender, or it is lower than POSTBUS_QUOTA_PER_MINUTE/HOUR say.'
    severity: 3
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: '''
customMetrics
| where name == "postbus.throttle.events"
| summarize throttles = sum(valueSum)
'''
          timeAggregation: 'Total'
          metricMeasureColumn: 'throttles'
          operator: 'GreaterThan'
          threshold: throttleThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroupId
      ]
    }
  }
}

// App Insights keeps only count/sum/min/max per export interval of a histogram, not its buckets, so the exact
// 97th percentile is not queryable. An interval whose maximum is within the bound had all its messages within it;
// counting only those gives a lower bound on the share within the SLO. The alert may fire early, never late.
resource latencySloAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${logAlertPrefix}postbus-latency-slo'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Postbus: end-to-end latency SLO breach'
    description: 'Fewer than the SLO share of messages reached ACS within the bound of being published (over the last hour). Silent while nothing is sent: the stalled-worker alert covers that case.'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    criteria: {
      allOf: [
        {
          query: replace('''
customMetrics
| where name == "postbus.e2e.latency"
| summarize total = sum(valueCount), within = sumif(valueCount, valueMax <= __SLO_MS__)
| where total > 0
| extend withinSloPermille = 1000.0 * within / total
| project withinSloPermille
''', '__SLO_MS__', string(sloLatencyMs))
          timeAggregation: 'Average'
          metricMeasureColumn: 'withinSloPermille'
          operator: 'LessThan'
          threshold: sloTargetPermille
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroupId
      ]
    }
  }
}

// Delivery reports (postbus.reports.received, by status) counted by the worker's report consumer. Engagement reports
// (view, click) and unusable ones (invalid) are not delivery outcomes and stay out of both the numerator and the total.
resource bounceAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${logAlertPrefix}postbus-bounce-rate'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Postbus: bounce + failed share above threshold'
    description: 'More than the threshold share of ACS delivery reports in the last hour were Bounced or Failed. ACS limits senders with high bounce rates: find the tenant and type with postbus report --since 1h, stop the bad list, and consider POSTBUS_SUPPRESS_DAYS.'
    severity: 1
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    criteria: {
      allOf: [
        {
          query: replace('''
customMetrics
| where name == "postbus.reports.received"
| extend status = tostring(customDimensions.status)
| where status in ("Delivered", "Bounced", "Suppressed", "Quarantined", "FilteredSpam", "Expired", "Failed")
| summarize total = sum(valueSum), bad = sumif(valueSum, status in ("Bounced", "Failed"))
| where total >= __MIN_REPORTS__
| extend bounceFailedPermille = 1000.0 * bad / total
| project bounceFailedPermille
''', '__MIN_REPORTS__', string(minimumReports))
          timeAggregation: 'Average'
          metricMeasureColumn: 'bounceFailedPermille'
          operator: 'GreaterThan'
          threshold: bounceAlertPermille
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroupId
      ]
    }
  }
}

// The worker records each email's first delivery in postbus.delivery.latency with slo_met = "true" when it came
// within the bound of the first enqueue, so the count within the SLO is exact (the histogram's count for that
// dimension), not read off buckets App Insights does not keep. Over delivery reports of every outcome: an email that
// bounced or expired was not delivered within five minutes either.
resource deliverySloAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${logAlertPrefix}postbus-delivery-slo'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Postbus: delivered-within-5-minutes share below the SLO'
    description: 'Fewer than the SLO share of the emails ACS reported on in the last hour were delivered within the bound of their first enqueue. Silent while no reports arrive (check the reports queue and the Event Grid subscription if sends continue).'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    criteria: {
      allOf: [
        {
          query: replace('''
let within = toscalar(customMetrics
| where name == "postbus.delivery.latency" and tostring(customDimensions.slo_met) == "true"
| summarize sum(valueCount));
customMetrics
| where name == "postbus.reports.received"
| extend status = tostring(customDimensions.status)
| where status in ("Delivered", "Bounced", "Suppressed", "Quarantined", "FilteredSpam", "Expired", "Failed")
| summarize total = sum(valueSum)
| where total >= __MIN_REPORTS__
| extend deliveredWithinSloPermille = 1000.0 * coalesce(within, 0.0) / total
| project deliveredWithinSloPermille
''', '__MIN_REPORTS__', string(minimumReports))
          timeAggregation: 'Average'
          metricMeasureColumn: 'deliveredWithinSloPermille'
          operator: 'LessThan'
          threshold: sloTargetPermille
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroupId
      ]
    }
  }
}

resource exceptionAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${logAlertPrefix}postbus-worker-exceptions'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Postbus: worker exceptions'
    description: 'The worker recorded unhandled exceptions. Systemic failures (401/403, unverified sender domain) also open the breaker.'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: '''
exceptions
| project timestamp, type, outerMessage, cloud_RoleInstance
'''
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroupId
      ]
    }
  }
}

output alertIds array = [
  deadLetterAlert.id
  stalledAlert.id
  backlogAlert.id
  throttleAlert.id
  latencySloAlert.id
  exceptionAlert.id
]

// The ingest API's requests reach Application Insights through the FastAPI instrumentation, under the role name
// postbus-api (POSTBUS_SERVICE_NAME in api.bicep). A refusal is a 4xx and the caller's business; a 5xx is ours:
// Service Bus, the record store or Entra's key endpoint unreachable, or a bug.
resource api5xxAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${logAlertPrefix}postbus-api-5xx'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Postbus: ingest API 5xx rate'
    description: 'More than the threshold share of the ingest API\'s requests failed with a 5xx in 5 minutes. 503 problems name the cause (Service Bus, the record store, the tenant\'s signing keys); read the api request lines and the exceptions.'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: replace('''
requests
| where cloud_RoleName == "postbus-api"
| summarize total = count(), failed = countif(toint(resultCode) >= 500)
| where total >= __MIN__
| extend failedPercent = 100.0 * failed / total
''', '__MIN__', string(apiMinRequests))
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'failedPercent'
          operator: 'GreaterThan'
          threshold: api5xxPercent
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroupId
      ]
    }
  }
}

resource apiLatencyAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${logAlertPrefix}postbus-api-p95-latency'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Postbus: ingest API p95 latency'
    description: 'The 95th percentile of the ingest API\'s request duration exceeded the threshold over 5 minutes. Check Service Bus (publish time), the replicas panel (HTTP scaling at its maximum) and CPU.'
    severity: 3
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: replace('''
requests
| where cloud_RoleName == "postbus-api" and name !endswith "/healthz" and name !endswith "/readyz"
| summarize p95 = percentile(duration, 95), total = count()
| where total >= __MIN__
''', '__MIN__', string(apiMinRequests))
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'p95'
          operator: 'GreaterThan'
          threshold: apiP95Ms
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroupId
      ]
    }
  }
}
