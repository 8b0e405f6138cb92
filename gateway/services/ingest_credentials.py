"""Credentials for a producer on the Kafka ingest topic (``meterly ingest credentials``).

A producer gets two things, one per question a broker and the validator ask:

1. may it write? A Kafka principal (SCRAM user ``ingest-<name>``) whose only ACL is WRITE on
   the ingest topic (``processors.kafka.principals``), where Meterly manages the cluster's
   users (SCRAM); elsewhere the operator gives the producer a principal of the cluster's;
2. whose usage is it? An ingest key of one tenant (an API key with scope ``ingest``), which
   every record carries in its ``meterly-key`` header and the ingest validator checks
   against the record key (``processors.usage.core.ingest_credentials``).

Revoking removes the principal and its ACLs, and revokes the key.
"""

from __future__ import annotations

from dataclasses import replace

import orjson
from starlette.concurrency import run_in_threadpool

from gateway.problems import ProblemError
from gateway.runtime import Runtime, tenant_or_404
from gateway.services.tenants import create_key, key_public
from processors.kafka import principals
from processors.tenants.core import keys
from processors.usage.core.ingest_credentials import KEY_HEADER
from schemas.admin_v1 import ApiKey
from schemas.api_v1 import IngestCredentialsCreated, IngestCredentialsPublic
from schemas.rfc3339 import now_text
from schemas.topics import INGEST

PRINCIPAL_PREFIX = "ingest-"


def _ingest_keys(runtime: Runtime) -> list[ApiKey]:
    return sorted((k for t in runtime.directory.tenants() for k in runtime.directory.keys_of(t.id)
                   if k.scope == keys.INGEST_SCOPE), key=lambda k: k.created_at)


def _public(runtime: Runtime, key: ApiKey) -> IngestCredentialsPublic:
    managed = principals.managed_mechanism(runtime.settings) is not None
    return IngestCredentialsPublic(
        name=key.name.removeprefix(PRINCIPAL_PREFIX), tenant_id=key.tenant_id,
        principal=key.name if managed else None,
        key=key_public(key, runtime.last_used.get(key.id)),
        topic=INGEST.full_name(runtime.settings.topic_prefix), header=KEY_HEADER)


def list_credentials(runtime: Runtime) -> list[IngestCredentialsPublic]:
    return [_public(runtime, k) for k in _ingest_keys(runtime)]


async def issue(runtime: Runtime, tenant_id: str, name: str) -> IngestCredentialsCreated:
    tenant_or_404(runtime, tenant_id)
    principal = PRINCIPAL_PREFIX + name
    if any(k.name == principal and k.revoked_at is None for k in _ingest_keys(runtime)):
        raise ProblemError(409, "ingest-credentials-exist", "Ingest credentials exist",
                           f"{name!r} already names ingest credentials; revoke them first or "
                           "choose another name")
    settings = runtime.settings
    assert settings.kafka_bootstrap
    topic = INGEST.full_name(settings.topic_prefix)
    kafka = {"bootstrap.servers": settings.kafka_bootstrap}  # handed out: not a client
    note = None
    mechanism = principals.managed_mechanism(settings)
    if mechanism is not None:
        password = await run_in_threadpool(principals.create_producer, settings, principal,
                                           topic)
        kafka |= {"security.protocol": settings.kafka_security_protocol.lower(),
                  "sasl.mechanism": mechanism, "sasl.username": principal,
                  "sasl.password": password}
    elif settings.kafka_security_protocol == "PLAINTEXT":
        note = ("this Kafka authenticates no one (PLAINTEXT): any client may write any "
                "topic; the ingest key still decides whose usage a record is")
    else:
        note = (f"Meterly does not manage this cluster's principals "
                f"({settings.kafka_sasl_mechanism or settings.kafka_security_protocol}): give "
                f"the producer a principal of the cluster's that may only write {topic}")
    made = await create_key(runtime, tenant_id, principal, keys.INGEST_SCOPE)
    await runtime.audit.record(
        "ingest.credentials_issued", f"ingest-credentials:{name}", tenant_id,
        orjson.dumps({"principal": principal if mechanism else None, "key_id": made.id,
                      "topic": topic}).decode())
    return IngestCredentialsCreated(
        name=name, tenant_id=tenant_id, principal=principal if mechanism else None,
        key=made, topic=topic, header=KEY_HEADER, kafka=kafka, note=note)


async def revoke(runtime: Runtime, name: str) -> IngestCredentialsPublic:
    principal = PRINCIPAL_PREFIX + name
    found = [k for k in _ingest_keys(runtime) if k.name == principal]
    if not found:
        raise ProblemError(404, "not-found", "Not found", f"no ingest credentials {name!r}")
    if principals.managed_mechanism(runtime.settings) is not None:
        await run_in_threadpool(principals.delete_producer, runtime.settings, principal)
    for key in found:
        if key.revoked_at is None:
            await runtime.admin_topic.publish(replace(key, revoked_at=now_text()))
    key = runtime.directory.key(found[-1].id) or found[-1]
    await runtime.audit.record("ingest.credentials_revoked", f"ingest-credentials:{name}",
                               key.tenant_id)
    return _public(runtime, key)
