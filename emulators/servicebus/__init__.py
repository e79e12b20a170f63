"""An AMQP 1.0 broker with Service Bus queue semantics."""
