"""Operator API: meter definitions, versioned (``gateway.services.meters``)."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.runtime import Operator, RuntimeDep
from gateway.services import meters
from schemas.meters_v1 import MeterPublic, MeterSpec

router = APIRouter(prefix="/v1/admin", tags=["meters"])


@router.post("/meters", status_code=201, response_model=MeterPublic)
async def create_meter(body: MeterSpec, runtime: RuntimeDep, _: Operator) -> MeterPublic:
    """Define a meter, or the next version of an existing one: which events it reads
    (`event_type`, `filters`), what it aggregates (`aggregation` of `value`, or of several
    `values` of one event) and how its groups are keyed (`group_by`). Events accepted from
    now on are read with it; events counted before keep what they contributed."""
    return await meters.create_meter(runtime, body)


@router.get("/meters", response_model=list[MeterPublic])
async def list_meters(runtime: RuntimeDep, _: Operator) -> list[MeterPublic]:
    """The latest version of every meter."""
    return meters.list_meters(runtime)


@router.get("/meters/{key}", response_model=MeterPublic)
async def get_meter(key: str, runtime: RuntimeDep, _: Operator) -> MeterPublic:
    return meters.get_meter(runtime, key)


@router.get("/meters/{key}/versions/{version}", response_model=MeterPublic)
async def get_meter_version(key: str, version: int, runtime: RuntimeDep,
                            _: Operator) -> MeterPublic:
    return meters.get_meter(runtime, key, version)
