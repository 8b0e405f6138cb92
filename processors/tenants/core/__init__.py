"""Tenant rules as pure code: API keys."""
