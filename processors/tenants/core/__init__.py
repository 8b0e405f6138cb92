"""Tenant rules as pure code: the directory of admin records, API keys, subscriptions."""
