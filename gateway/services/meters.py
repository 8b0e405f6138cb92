"""Meter definitions (versioned, on the admin topic like plans; docs/meters.md).

A definition never changes once created: an edit is a new version, which the gateways and
the ingest validator read events with from then on; events counted before keep what they
contributed. A new version may change what a meter reads, never how it aggregates (that is
another meter).
"""

from __future__ import annotations

from gateway.problems import ProblemError
from gateway.runtime import Runtime
from processors.usage.core.meters import meter_from_spec
from schemas.admin_v1 import MeterVersion
from schemas.meters_v1 import MeterPublic, MeterSpec
from schemas.rfc3339 import now_text


def meter_public(record: MeterVersion) -> MeterPublic:
    return MeterPublic(**record.spec, version=record.version, created_at=record.created_at)


async def create_meter(runtime: Runtime, body: MeterSpec) -> MeterPublic:
    """Create a meter, or the next version of an existing one."""
    latest = runtime.directory.latest_meter(body.key)
    version = 1 if latest is None else latest.version + 1
    spec = body.model_dump(mode="json", exclude_none=True)
    try:
        meter_from_spec(spec, version)
    except ValueError as exc:
        raise ProblemError(422, "invalid-meter", "Invalid meter", str(exc)) from None
    if latest is not None and latest.spec["aggregation"] != body.aggregation:
        raise ProblemError(409, "meter-aggregation-fixed", "Aggregation cannot change",
                           f"meter {body.key} aggregates by {latest.spec['aggregation']}: "
                           "counted data would mean something else; define another meter")
    record = MeterVersion(body.key, version, now_text(), spec)
    await runtime.admin_topic.publish(record)
    return meter_public(record)


def list_meters(runtime: Runtime) -> list[MeterPublic]:
    """The latest version of every meter."""
    return [meter_public(m) for k in runtime.directory.meter_keys()
            if (m := runtime.directory.latest_meter(k)) is not None]


def get_meter(runtime: Runtime, key: str, version: int | None = None) -> MeterPublic:
    record = (runtime.directory.latest_meter(key) if version is None
              else runtime.directory.meter(key, version))
    if record is None:
        which = f"{key} v{version}" if version else key
        raise ProblemError(404, "meter-not-found", "Meter not found", f"no meter {which}")
    return meter_public(record)
