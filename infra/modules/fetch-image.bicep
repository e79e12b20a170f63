// Reads the image the worker app runs now, so that `azd provision` after `azd deploy` keeps it instead of resetting
// the app to the placeholder (the azd "resource exists" pattern). A separate module because a template cannot read a
// resource it also deploys.

@description('Container app name.')
param appName string

@description('True once azd has deployed the app (SERVICE_WORKER_RESOURCE_EXISTS).')
param exists bool

resource existingApp 'Microsoft.App/containerApps@2026-01-01' existing = if (exists) {
  name: appName
}

output image string = exists ? existingApp.properties.template.containers[0].image : ''
