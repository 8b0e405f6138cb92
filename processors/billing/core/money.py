"""Money: Decimal amounts with a currency, rounded to the currency's minor unit explicitly.

Rounding rule (documented for invoices): each invoice line is computed exactly, then rounded
once to the currency's minor unit with ROUND_HALF_UP (0.005 EUR -> 0.01 EUR); subtotals and
totals are sums of rounded lines, so an invoice always adds up to the cent.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from schemas.currencies import MINOR_UNITS


class CurrencyError(ValueError):
    pass


def minor_units(currency: str) -> int:
    try:
        return MINOR_UNITS[currency]
    except KeyError:
        raise CurrencyError(f"unsupported currency {currency!r}") from None


def round_to_minor(amount: Decimal, currency: str) -> Decimal:
    """``amount`` rounded half-up to the minor unit of ``currency``."""
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Money:
    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        minor_units(self.currency)
        if not isinstance(self.amount, Decimal):
            raise TypeError("money amounts are Decimal, never float")

    def __add__(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise CurrencyError(f"cannot add {other.currency} to {self.currency}")
        return Money(self.amount + other.amount, self.currency)

    @property
    def minor(self) -> int:
        """The amount in minor units (cents); only for amounts already rounded."""
        scaled = self.amount.scaleb(minor_units(self.currency))
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{self.amount} {self.currency} is not a whole number of minor units")
        return int(scaled)

    def __str__(self) -> str:
        return f"{round_to_minor(self.amount, self.currency)} {self.currency}"
