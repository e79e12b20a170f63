// Alerts on the pipeline's failure signals. Metric alerts watch the queue (Service Bus platform metrics); log alerts
// query the worker's telemetry in Application Insights (meter `postbus`, table customMetrics; exceptions table).

@description('Azure region for the log alerts (metric alerts are global).')
param location string

@description('Tags applied to every alert.')
param tags object

@description('Service Bus namespace resource id.')
param namespaceId string

@description('Queue name (Service Bus metric dimension EntityName).')
param queueName string

@description('Application Insights component resource id.')
param appInsightsId string

@description('Action group every alert notifies.')
param actionGroupId string

@description('Active messages above which a backlog that lasts 15 minutes alerts. Size it as (ACS quota per minute x 15): a backlog the quota could not drain in 15 minutes.')
param backlogThreshold int = 1000

@description('Throttle (HTTP 429) events per 5 minutes above which to alert. The rate gate should keep them rare.')
param throttleThreshold int = 20

@description('End-to-end latency SLO: share of messages accepted by ACS within sloLatencyMs of publishing, in thousandths (970 = 97%).')
@minValue(1)
@maxValue(1000)
param sloTargetPermille int = 970

@description('End-to-end latency SLO bound in milliseconds (5 minutes).')
param sloLatencyMs int = 300000

@description('Resource-name prefix for metric alerts.')
param metricAlertPrefix string = 'ma-'

@description('Resource-name prefix for log alerts.')
param logAlertPrefix string = 'sqr-'

resource deadLetterAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${metricAlertPrefix}${queueName}-dead-letters'
  location: 'global'
  tags: tags
  properties: {
    description: 'A message was dead-lettered. Read its DeadLetterReason (Service Bus Explorer, or the workbook) and fix the cause before replaying.'
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
          name: 'DeadLetteredAboveZero'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'DeadletteredMessages'
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
          threshold: 0
          timeAggregation: 'Maximum'
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

// Minimum over the window: the alert fires only if the backlog never dropped below the threshold for 15 minutes,
// so a spike that is draining at the quota does not page anyone until it stops draining.
resource backlogAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${metricAlertPrefix}${queueName}-backlog'
  location: 'global'
  tags: tags
  properties: {
    description: 'Active messages stayed above the threshold for 15 minutes: workers are stuck, scaled to zero, or the ACS quota is too small for the load.'
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
    description: 'Fewer than the SLO share of messages reached ACS within the bound of being published (over the last hour).'
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
  backlogAlert.id
  throttleAlert.id
  latencySloAlert.id
  exceptionAlert.id
]
