"""Money: Decimal amounts with a currency, rounded to the currency's minor unit explicitly.

Rounding rule (documented for invoices): each invoice line is computed exactly, then rounded
once to the currency's minor unit, half-up (half away from zero: 0.005 EUR -> 0.01 EUR);
subtotals and totals are sums of rounded lines, so an invoice always adds up to the cent.

"Exactly" means exactly. Billing's Decimal arithmetic runs in ``EXACT``, a context wide
enough for every product and sum of the amounts and quantities the API accepts
(docs/billing.md, "Bounds"), in which an operation that would have to round raises
``decimal.Inexact`` instead of rounding silently; shares of a period are exact fractions
(``fractions.Fraction``); ``round_to_minor`` rounds the exact value, so a value within
10^-18 of a tie still lands on the right side of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import (
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from fractions import Fraction
from functools import wraps
from typing import ParamSpec, TypeVar

from schemas.currencies import MINOR_UNITS

#: 200 significant digits: quantities summed over a period (below 10^24, 9 decimals) times
#: unit prices (below 10^12, 12 decimals) need at most 57.
EXACT = Context(prec=200, rounding=ROUND_HALF_UP,
                traps=[Inexact, InvalidOperation, DivisionByZero, Overflow])
P = ParamSpec("P")
R = TypeVar("R")


def exactly(function: Callable[P, R]) -> Callable[P, R]:
    """Run ``function`` with its Decimal arithmetic in ``EXACT``."""
    @wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with localcontext(EXACT):
            return function(*args, **kwargs)

    return run


class CurrencyError(ValueError):
    pass


def minor_units(currency: str) -> int:
    try:
        return MINOR_UNITS[currency]
    except KeyError:
        raise CurrencyError(f"unsupported currency {currency!r}") from None


def half_up(value: Fraction) -> int:
    """The integer nearest ``value``; a half goes away from zero."""
    whole, rest = divmod(abs(value.numerator), value.denominator)
    if 2 * rest >= value.denominator:
        whole += 1
    return whole if value >= 0 else -whole


def round_to_minor(amount: Decimal | Fraction, currency: str) -> Decimal:
    """The exact ``amount`` rounded half-up to the minor unit of ``currency``."""
    places = minor_units(currency)
    scale: int = 10**places
    units = half_up(Fraction(amount) * scale)
    with localcontext(EXACT):
        return Decimal(units).scaleb(-places)


@dataclass(frozen=True)
class Money:
    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        minor_units(self.currency)
        if not isinstance(self.amount, Decimal):
            raise TypeError("money amounts are Decimal, never float")

    @exactly
    def __add__(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise CurrencyError(f"cannot add {other.currency} to {self.currency}")
        return Money(self.amount + other.amount, self.currency)

    @property
    def minor(self) -> int:
        """The amount in minor units (cents); only for amounts already rounded."""
        scale: int = 10 ** minor_units(self.currency)
        scaled = Fraction(self.amount) * scale
        if scaled.denominator != 1:
            raise ValueError(f"{self.amount} {self.currency} is not a whole number of minor units")
        return scaled.numerator

    def __str__(self) -> str:
        return f"{round_to_minor(self.amount, self.currency)} {self.currency}"
