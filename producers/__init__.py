"""The publishing side: validate notification events and put them on the queue."""
