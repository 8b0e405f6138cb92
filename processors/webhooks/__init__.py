"""Webhooks: signed deliveries, retries, the attempt log, dead letters."""
