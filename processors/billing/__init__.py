"""Billing: plans priced, periods closed, invoices numbered, stored and rendered to PDF."""
