"""Local stand-ins for Azure Service Bus and ACS Email that the unmodified SDKs talk to."""
