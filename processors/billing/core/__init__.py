"""Billing rules as pure code: money, pricing, invoice composition, PDFs, messages."""
