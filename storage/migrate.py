"""Versioned CQL migrations, applied in order and idempotently.

Each ``migrations/NNNN_name.cql`` file holds statements separated by ``;``. Every statement
must itself be idempotent (``IF NOT EXISTS``): a crash between a statement and the version
record re-runs the whole file. The applied version, name and a checksum of the file are
recorded in ``schema_migrations``; an applied file whose text changed is an error, since
the database would no longer match what the file says.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources

from cassandra.cluster import Session

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.cql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def statements(self) -> list[str]:
        lines = [ln for ln in self.text.splitlines() if not ln.strip().startswith("--")]
        return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


class MigrationError(RuntimeError):
    pass


def available() -> list[Migration]:
    found = []
    for entry in resources.files("storage").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration versions must run 1, 2, 3... without gaps: {versions}")
    return found


def migrate(session: Session, keyspace: str, replication: str) -> list[int]:
    """Create the keyspace if needed and apply pending migrations; return versions applied."""
    session.execute(
        f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication}"
    )
    session.execute(
        f"CREATE TABLE IF NOT EXISTS {keyspace}.schema_migrations ("
        "version int PRIMARY KEY, name text, checksum text, applied_at timestamp)"
    )
    applied = {
        row.version: row.checksum
        for row in session.execute(f"SELECT version, checksum FROM {keyspace}.schema_migrations")
    }
    done = []
    for migration in available():
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} was changed after it "
                    "was applied; add a new migration instead of editing an applied one"
                )
            continue
        for statement in migration.statements():
            session.execute(statement.replace("{keyspace}", keyspace), timeout=60)
        session.execute(
            f"INSERT INTO {keyspace}.schema_migrations (version, name, checksum, applied_at) "
            "VALUES (%s, %s, %s, %s)",
            (migration.version, migration.name, migration.checksum, datetime.now(UTC)),
        )
        log.info("applied migration %04d_%s", migration.version, migration.name)
        done.append(migration.version)
    return done


def applied_versions(session: Session, keyspace: str) -> list[int]:
    rows = session.execute(f"SELECT version FROM {keyspace}.schema_migrations")
    return sorted(row.version for row in rows)
