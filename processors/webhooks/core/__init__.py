"""Webhook rules as pure code: signatures, retry schedule, circuit breaker, SSRF rules."""
