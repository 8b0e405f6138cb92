"""Tenants, their API keys, plans, subscriptions, credits and webhook endpoints."""
