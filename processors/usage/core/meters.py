"""Meter definitions and what one event contributes to them (docs/meters.md). Pure.

A meter reads the events of one CloudEvent ``type``, filters them, and extracts from each
event's ``data`` a value (or several named values) and the values of its dimensions. The
gateway and the ingest validator call ``contributions`` when an event is accepted, with the
meter versions in force then; the counter folds what it returns
(``processors.usage.core.aggregations``). Every refusal is an ``EventRejected`` whose text
goes into the event's receipt: a value or dimension that is missing or of the wrong type is
never counted as 0 or as an empty group.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Literal

import orjson

from schemas.admin_v1 import MeterVersion
from schemas.cloudevents import EventRejected, parse_amount
from schemas.usage_v1 import MeterContribution, UsageEvent

Aggregation = Literal["count", "sum", "max", "latest", "unique_count"]
AGGREGATIONS: tuple[Aggregation, ...] = ("count", "sum", "max", "latest", "unique_count")
KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
DIMENSION_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
#: A dimension value (a group's part) or a unique_count value, as text, at most this long.
MAX_TEXT = 200
MAX_DIMENSIONS = 8
MAX_VALUES = 16
DEFAULT_MAX_GROUPS = 1000
_PART = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]{0,63})((?:\[\d{1,6}\])*)$")
_INDEX = re.compile(r"\[(\d+)\]")

#: A JSON path into ``data``: object member names and array indexes.
Path = tuple[str | int, ...]
Scalar = str | int | bool


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()


def parse_path(text: str) -> Path:
    """``a.b[0].c`` as its steps; raises ValueError for anything else."""
    steps: list[str | int] = []
    for part in text.split("."):
        found = _PART.match(part)
        if found is None:
            raise ValueError(f"path {text!r} is not name(.name|[index])*")
        steps.append(found.group(1))
        steps += [int(i) for i in _INDEX.findall(found.group(2))]
    return tuple(steps)


def path_text(path: Path) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out


def lookup(data: Any, path: Path) -> Any:
    """The value at ``path`` in ``data``, or ``MISSING``."""
    node = data
    for step in path:
        if isinstance(step, int):
            if not isinstance(node, list) or step >= len(node):
                return MISSING
            node = node[step]
        else:
            if not isinstance(node, dict) or step not in node:
                return MISSING
            node = node[step]
    return node


@dataclass(frozen=True)
class ValueSource:
    """Where one value of an event is: a path, an optional declared default for when it is
    absent, and the other named values it is net of (``minus``)."""

    path: Path
    default: Decimal | None = None
    minus: tuple[str, ...] = ()


@dataclass(frozen=True)
class Meter:
    key: str
    version: int
    event_type: str
    aggregation: Aggregation
    #: (name, source): one unnamed source, or several named ones (``value_dimension``).
    values: tuple[tuple[str | None, ValueSource], ...]
    value_dimension: str | None
    group_by: tuple[tuple[str, Path], ...]
    filters: tuple[tuple[Path, frozenset[str]], ...]
    max_groups: int = DEFAULT_MAX_GROUPS

    @property
    def dimensions(self) -> tuple[str, ...]:
        """The names of a group's parts, in order."""
        named = (self.value_dimension,) if self.value_dimension else ()
        return (*(name for name, _ in self.group_by), *named)


@dataclass(frozen=True)
class Contribution:
    """What one event adds to one group of one meter."""

    meter: str
    version: int
    group: tuple[str, ...]
    #: A number for count (1), sum, max and latest; the value's canonical text for
    #: unique_count.
    value: Decimal | str


def _canonical(value: Any, what: str) -> str:
    """A dimension value or filter value as text: strings, integers and booleans only."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise EventRejected(f"{what} is longer than {MAX_TEXT} characters")
        return value
    raise EventRejected(f"{what} must be a string, an integer or a boolean")


def meter_from_spec(doc: Mapping[str, Any], version: int) -> Meter:
    """A meter from its definition (the JSON the API takes; ``schemas.meters_v1``);
    raises ValueError naming what is wrong."""
    key = str(doc.get("key", ""))
    if not KEY_PATTERN.match(key):
        raise ValueError("key may hold a-z, 0-9, '_', '.' and '-' (at most 64)")
    aggregation = doc.get("aggregation")
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}")
    values_doc = doc.get("values")
    value_dimension = doc.get("value_dimension")
    if values_doc is not None:
        if doc.get("value") is not None:
            raise ValueError("give value or values, not both")
        if not isinstance(values_doc, Mapping) or not 1 <= len(values_doc) <= MAX_VALUES:
            raise ValueError(f"values must name 1 to {MAX_VALUES} values")
        if not isinstance(value_dimension, str) or not DIMENSION_PATTERN.match(value_dimension):
            raise ValueError("values needs value_dimension, the dimension their names fill")
        values: tuple[tuple[str | None, ValueSource], ...] = tuple(
            (str(name), _source(spec, str(name))) for name, spec in values_doc.items())
        names = {name for name, _ in values if name is not None}
        for name, source in values:
            assert name is not None
            if not _canonical_name(name):
                raise ValueError(f"value name {name!r} may hold a-z, 0-9 and '_'")
            unknown = [m for m in source.minus if m not in names or m == name]
            if unknown:
                raise ValueError(f"value {name!r} is net of {unknown}, which are not other "
                                 "values of this meter")
    else:
        if value_dimension is not None:
            raise ValueError("value_dimension goes with values")
        spec = doc.get("value") or "quantity"
        values = ((None, _source(spec, "value")),)
    if aggregation == "count" and (values_doc is not None):
        raise ValueError("count reads no value: leave values out")
    if aggregation == "unique_count" and any(s.minus or s.default is not None
                                             for _, s in values):
        raise ValueError("unique_count values take no minus or default")
    group_doc = doc.get("group_by") or {}
    if not isinstance(group_doc, Mapping) or len(group_doc) > MAX_DIMENSIONS:
        raise ValueError(f"group_by maps at most {MAX_DIMENSIONS} dimension names to paths")
    group_by = tuple((str(name), _path(path, f"group_by.{name}"))
                     for name, path in group_doc.items())
    for name, _ in group_by:
        if not DIMENSION_PATTERN.match(name):
            raise ValueError(f"dimension name {name!r} may hold a-z, 0-9 and '_'")
    if value_dimension is not None and value_dimension in dict(group_by):
        raise ValueError(f"{value_dimension!r} is both a group_by dimension and the "
                         "value_dimension")
    filters_doc = doc.get("filters") or {}
    if not isinstance(filters_doc, Mapping):
        raise ValueError("filters maps paths to a value or a list of values")
    filters = []
    for path, wanted in filters_doc.items():
        allowed = wanted if isinstance(wanted, list) else [wanted]
        try:
            texts = frozenset(_canonical(v, f"filters.{path}") for v in allowed)
        except EventRejected as exc:
            raise ValueError(str(exc)) from None
        if not texts:
            raise ValueError(f"filters.{path} lists no value")
        filters.append((_path(path, f"filters.{path}"), texts))
    event_type = str(doc.get("event_type", ""))
    if not event_type:
        raise ValueError("event_type is required")
    raw_max = doc.get("max_groups")
    max_groups = DEFAULT_MAX_GROUPS if raw_max is None else int(raw_max)
    if not 1 <= max_groups <= 100_000:
        raise ValueError("max_groups must be 1 to 100,000")
    return Meter(key, version, event_type, aggregation, values,
                 value_dimension if values_doc is not None else None, group_by,
                 tuple(filters), max_groups)


def _canonical_name(name: str) -> bool:
    return DIMENSION_PATTERN.match(name) is not None


def _path(text: Any, what: str) -> Path:
    if not isinstance(text, str):
        raise ValueError(f"{what} must be a path such as usage.tokens")
    return parse_path(text)


def _source(spec: Any, what: str) -> ValueSource:
    if isinstance(spec, str):
        return ValueSource(_path(spec, what))
    if not isinstance(spec, Mapping) or "path" not in spec:
        raise ValueError(f"{what} must be a path, or an object with a path")
    default = spec.get("default")
    try:
        parsed = None if default is None else parse_amount(default, f"{what}.default")
    except EventRejected as exc:
        raise ValueError(str(exc)) from None
    minus = spec.get("minus") or []
    if not isinstance(minus, list) or not all(isinstance(m, str) for m in minus):
        raise ValueError(f"{what}.minus must list other value names")
    return ValueSource(_path(spec["path"], f"{what}.path"), parsed, tuple(minus))


def matches(meter: Meter, data: Any) -> bool:
    """Whether the event's ``data`` passes the meter's filters."""
    for path, allowed in meter.filters:
        found = lookup(data, path)
        if found is MISSING or isinstance(found, dict | list | float) or found is None:
            return False
        if _canonical(found, path_text(path)) not in allowed:
            return False
    return True


def _number(meter: Meter, source: ValueSource, data: Any) -> Decimal:
    what = f"data.{path_text(source.path)} ({meter.key})"
    found = lookup(data, source.path)
    if found is MISSING or found is None:
        if source.default is not None:
            return source.default
        raise EventRejected(f"{what} is missing")
    return parse_amount(found, what)


def contributions(meters: Iterable[Meter], data: Any) -> list[Contribution]:
    """What an event with ``data`` adds to each of ``meters`` (the versions in force for
    its type) whose filters it passes; raises EventRejected when a meter it passes cannot
    read it (then nothing of the event counts)."""
    out: list[Contribution] = []
    for meter in meters:
        if not matches(meter, data):
            continue
        group: list[str] = []
        for name, path in meter.group_by:
            found = lookup(data, path)
            if found is MISSING or found is None:
                raise EventRejected(f"dimension {name} (data.{path_text(path)}) is missing "
                                    f"({meter.key})")
            group.append(_canonical(found, f"dimension {name} ({meter.key})"))
        if meter.aggregation == "count":
            out.append(Contribution(meter.key, meter.version, tuple(group), Decimal(1)))
            continue
        if meter.aggregation == "unique_count":
            ((_, source),) = meter.values
            found = lookup(data, source.path)
            if found is MISSING or found is None:
                raise EventRejected(f"data.{path_text(source.path)} ({meter.key}) is missing")
            if isinstance(found, dict | list | float):
                raise EventRejected(f"data.{path_text(source.path)} ({meter.key}) must be a "
                                    "string, an integer or a boolean")
            text = orjson.dumps(found).decode()
            if len(text) > MAX_TEXT:
                raise EventRejected(f"data.{path_text(source.path)} ({meter.key}) is longer "
                                    f"than {MAX_TEXT} characters")
            out.append(Contribution(meter.key, meter.version, tuple(group), text))
            continue
        raw = {name: _number(meter, source, data) for name, source in meter.values}
        for value_name, source in meter.values:
            value = raw[value_name]
            for other in source.minus:
                value -= raw[other]
            if value < 0:
                raise EventRejected(f"{value_name} ({meter.key}) is negative once "
                                    f"{', '.join(source.minus)} is taken from it")
            named = (value_name,) if value_name is not None else ()
            out.append(Contribution(meter.key, meter.version, (*group, *named), value))
    return out


class MeterCache:
    """Meters from their admin records, each version read once (definitions never change)."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int], Meter] = {}

    def meters(self, records: Iterable[MeterVersion]) -> list[Meter]:
        out = []
        for record in records:
            meter = self._known.get((record.key, record.version))
            if meter is None:
                meter = self._known[(record.key, record.version)] = meter_from_spec(
                    record.spec, record.version)
            out.append(meter)
        return out


def metered(event: UsageEvent, data: Any, meters: list[Meter]) -> UsageEvent:
    """``event`` with what it contributes to ``meters`` (the versions in force for its
    type); unchanged when no meter reads its type. Raises EventRejected as
    ``contributions`` does."""
    if not meters:
        return event
    by_key = {m.key: m for m in meters}
    found = contributions(meters, data)
    return replace(event, contributions=tuple(
        MeterContribution(c.meter, c.version, by_key[c.meter].aggregation,
                          tuple(zip(by_key[c.meter].dimensions, c.group, strict=True)),
                          str(c.value))
        for c in found))
