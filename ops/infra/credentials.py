"""The secrets of the locally provisioned Kafka and Cassandra, generated once per state
directory and kept in ``<state>/credentials.json`` (mode 0600).

- Kafka ``meterly`` (SASL/SCRAM-SHA-512): Meterly's own principal, a super user (every
  topic, group and transactional id; SCRAM users and ACLs for ingest producers);
- Kafka ``broker`` (SCRAM-SHA-512): brokers talking to each other;
- Kafka ``controller`` (SASL/PLAIN, the controller listener only): brokers talking to the
  KRaft quorum;
- Cassandra ``meterly`` (``PasswordAuthenticator``): Meterly's own role, a superuser; the
  default ``cassandra`` role gets a random password and may no longer log in.

Ingest producers get their own SCRAM principals (``meterly ingest credentials``), which
may only write the ingest topic. ``client_env`` is what a Meterly process needs to connect
as ``meterly``: the ``METERLY_*`` settings ``processors.kafka.config`` and
``storage.cassandra`` read.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from dataclasses import asdict, dataclass, fields
from pathlib import Path

KAFKA_USER = "meterly"
KAFKA_BROKER_USER = "broker"
KAFKA_CONTROLLER_USER = "controller"
CASSANDRA_ROLE = "meterly"
#: Meterly's principal on the local Kafka's SCRAM listeners.
KAFKA_MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class LocalCredentials:
    kafka_meterly: str
    kafka_broker: str
    kafka_controller: str
    cassandra_meterly: str
    #: What the default ``cassandra`` role's password becomes (its login is also turned off).
    cassandra_default: str

    def client_env(self) -> dict[str, str]:
        """The settings of a Meterly process connecting as ``meterly``."""
        return {
            "METERLY_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "METERLY_KAFKA_SASL_MECHANISM": KAFKA_MECHANISM,
            "METERLY_KAFKA_SASL_USERNAME": KAFKA_USER,
            "METERLY_KAFKA_SASL_PASSWORD": self.kafka_meterly,
            "METERLY_CASSANDRA_USERNAME": CASSANDRA_ROLE,
            "METERLY_CASSANDRA_PASSWORD": self.cassandra_meterly,
        }

    def kafka_client(self) -> dict[str, str]:
        """librdkafka settings for ``meterly`` on a SASL_PLAINTEXT listener."""
        return {"security.protocol": "sasl_plaintext", "sasl.mechanism": KAFKA_MECHANISM,
                "sasl.username": KAFKA_USER, "sasl.password": self.kafka_meterly}


def _password() -> str:
    # 256 bits, URL-safe: no quote or backslash to escape in a JAAS line or CQL literal.
    return secrets.token_urlsafe(32)


def load_or_create(path: Path) -> LocalCredentials:
    """The credentials in ``path``; generated and written (0600) on first use. Two
    processes racing to create it agree: the file is created exclusively, and the loser
    reads the winner's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fresh = LocalCredentials(**{f.name: _password() for f in fields(LocalCredentials)})
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(asdict(fresh), out, indent=2)
        try:
            os.link(tmp, path)  # fails if another process created it first
        except FileExistsError:
            pass
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    doc = json.loads(path.read_text())
    return LocalCredentials(**{f.name: str(doc[f.name]) for f in fields(LocalCredentials)})
