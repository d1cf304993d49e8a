"""The outside world: settings, database, CRM client, circuit breaker and their Dagster resources."""
