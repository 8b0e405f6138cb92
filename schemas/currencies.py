"""The currencies Meterly bills in, with their ISO 4217 minor units (digits after the point):
an amount in a currency is rounded to this many places (``processors.billing.core.money``)."""

from __future__ import annotations

MINOR_UNITS: dict[str, int] = {
    "USD": 2, "EUR": 2, "GBP": 2, "JPY": 0, "CHF": 2, "CAD": 2, "AUD": 2, "SEK": 2,
    "NOK": 2, "DKK": 2, "INR": 2, "BRL": 2, "CNY": 2, "KWD": 3, "BHD": 3,
}
CURRENCIES: tuple[str, ...] = tuple(MINOR_UNITS)
