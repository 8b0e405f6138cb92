"""Meter definitions as the API takes them and the admin topic keeps them (``MeterSpec``);
``processors.usage.core.meters.meter_from_spec`` reads them (docs/meters.md).

The same JSON is kept on the admin topic, so a meter version reads back exactly as it was
created.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Scalar = str | int | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ValueSpec(_Strict):
    path: str = Field(max_length=200, description="a JSON path into data: a.b[0].c")
    default: Decimal | None = Field(
        default=None, max_digits=24, decimal_places=9,
        description="taken when the path is absent (otherwise the event is rejected)")
    minus: list[str] = Field(default_factory=list, max_length=16,
                             description="other values of this meter this one is net of")


class MeterSpec(_Strict):
    key: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$",
                     description="what plans price and queries name")
    event_type: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$",
                            description="the CloudEvent type it reads")
    aggregation: Literal["count", "sum", "max", "latest", "unique_count"]
    description: str = Field(default="", max_length=500)
    value: str | None = Field(default=None, max_length=200,
                              description="the JSON path of the value (default: quantity)")
    values: dict[str, str | ValueSpec] | None = Field(
        default=None, max_length=16,
        description="several values of one event, each its own group: name -> path")
    value_dimension: str | None = Field(
        default=None, pattern=r"^[a-z][a-z0-9_]{0,31}$",
        description="the dimension the names of `values` fill")
    group_by: dict[str, str] = Field(default_factory=dict, max_length=8,
                                     description="dimension name -> JSON path")
    filters: dict[str, Scalar | list[Scalar]] = Field(
        default_factory=dict, max_length=16,
        description="JSON path -> the value, or the values, an event must have")
    max_groups: int = Field(default=1000, ge=1, le=100_000,
                            description="groups per tenant, meter and period")


class MeterPublic(MeterSpec):
    version: int
    created_at: str
