"""Kafka principals for ingest producers: a SCRAM user that may write one topic and nothing
else (no read, no other topic, no group, no transactional id, no cluster operation).

Made and removed through Meterly's own principal, which must be allowed to alter SCRAM
credentials and ACLs (a super user on the locally provisioned Kafka). A cluster whose
principals Meterly does not manage (SASL PLAIN or OAUTHBEARER, a managed service's API
keys) gets none: ``managed_mechanism`` says so and the operator creates the principal there.
"""

from __future__ import annotations

import secrets

from confluent_kafka.admin import AdminClient

# confluent_kafka.admin re-exports these without declaring it, which mypy --strict refuses.
from confluent_kafka.admin._acl import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
)
from confluent_kafka.admin._resource import ResourcePatternType, ResourceType
from confluent_kafka.admin._scram import (
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from processors.kafka.config import client_config
from processors.runtime.settings import Settings

_MECHANISMS = {"SCRAM-SHA-256": ScramMechanism.SCRAM_SHA_256,
               "SCRAM-SHA-512": ScramMechanism.SCRAM_SHA_512}
ITERATIONS = 8192
TIMEOUT = 30.0


def managed_mechanism(settings: Settings) -> str | None:
    """The SCRAM mechanism Meterly makes principals for, or None when the cluster's
    principals are not Meterly's to make (no SASL, or not SCRAM)."""
    mechanism = settings.kafka_sasl_mechanism
    return mechanism if mechanism in _MECHANISMS else None


def _writes(principal: str, topic: str) -> list[AclBinding]:
    # WRITE implies DESCRIBE; an idempotent producer needs nothing more (KIP-679).
    return [AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL,
                       f"User:{principal}", "*", AclOperation.WRITE, AclPermissionType.ALLOW)]


def create_producer(settings: Settings, principal: str, topic: str) -> str:
    """Make ``principal`` a SCRAM user that may only write ``topic``; return its password."""
    mechanism = managed_mechanism(settings)
    assert mechanism is not None
    assert settings.kafka_bootstrap
    password = secrets.token_urlsafe(32)
    admin = AdminClient(client_config(settings.kafka_bootstrap))
    upsert = UserScramCredentialUpsertion(
        principal, ScramCredentialInfo(_MECHANISMS[mechanism], ITERATIONS), password.encode())
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result(TIMEOUT)
    for future in admin.create_acls(_writes(principal, topic)).values():
        future.result(TIMEOUT)
    return password


def delete_producer(settings: Settings, principal: str) -> None:
    """Remove ``principal``'s SCRAM credentials and every ACL naming it."""
    mechanism = managed_mechanism(settings)
    assert mechanism is not None
    assert settings.kafka_bootstrap
    admin = AdminClient(client_config(settings.kafka_bootstrap))
    # None matches any resource name and any host (the stubs say str).
    gone = AclBindingFilter(ResourceType.ANY, None,  # type: ignore[arg-type]
                            ResourcePatternType.ANY, f"User:{principal}",
                            None,  # type: ignore[arg-type]
                            AclOperation.ANY, AclPermissionType.ANY)
    for future in admin.delete_acls([gone]).values():
        future.result(TIMEOUT)
    deletion = UserScramCredentialDeletion(principal, _MECHANISMS[mechanism])
    for future in admin.alter_user_scram_credentials([deletion]).values():
        try:
            future.result(TIMEOUT)
        except Exception as exc:
            if "RESOURCE_NOT_FOUND" not in str(exc):
                raise
