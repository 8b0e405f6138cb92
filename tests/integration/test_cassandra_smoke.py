"""The database is a real Cassandra: writes, reads, migrations, restarts that keep data."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from cassandra.cluster import Session

from processors.runtime.settings import Settings
from storage.cassandra import connect
from storage.migrate import MigrationError, applied_versions, available, migrate
from tests.infra import Infra

pytestmark = pytest.mark.integration


@pytest.fixture
def session(settings: Settings) -> Iterator[Session]:
    assert settings.cassandra_hosts
    cluster, sess = connect(settings.cassandra_hosts, settings.cassandra_keyspace,
                            security=settings.cassandra_security)
    yield sess
    cluster.shutdown()


def test_write_and_read(session: Session) -> None:
    tenant = f"t-{uuid.uuid4()}"
    session.execute(
        "INSERT INTO usage_by_period (tenant_id, period, meter, event_count, quantity_sum) "
        "VALUES (%s, '2026-11', 'api.calls', 42, 12.345)",
        (tenant,),
    )
    row = session.execute(
        "SELECT event_count, quantity_sum FROM usage_by_period WHERE tenant_id=%s "
        "AND period='2026-11'",
        (tenant,),
    ).one()
    assert (row.event_count, row.quantity_sum) == (42, Decimal("12.345"))


def test_write_timestamps_make_absolute_values_idempotent(session: Session) -> None:
    """The mirror's premise: a stale write (lower version) never overwrites a newer one."""
    tenant = f"t-{uuid.uuid4()}"
    stmt = ("INSERT INTO usage_by_period (tenant_id, period, meter, event_count) "
            "VALUES (%s, '2026-11', 'm', %s) USING TIMESTAMP %s")
    session.execute(stmt, (tenant, 50, 20))
    session.execute(stmt, (tenant, 40, 10))
    row = session.execute("SELECT event_count FROM usage_by_period WHERE tenant_id=%s "
                          "AND period='2026-11'", (tenant,)).one()
    assert row.event_count == 50


def test_migrations_are_recorded_and_idempotent(session: Session, settings: Settings) -> None:
    expected = [m.version for m in available()]
    assert applied_versions(session, settings.cassandra_keyspace) == expected
    assert migrate(session, settings.cassandra_keyspace, settings.cassandra_replication) == []


def test_an_edited_applied_migration_is_refused(session: Session, run_id: str) -> None:
    keyspace = f"meterly_edit_{run_id}"
    replication = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    assert migrate(session, keyspace, replication) == [m.version for m in available()]
    session.execute(f"UPDATE {keyspace}.schema_migrations SET checksum='x' WHERE version=1")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(session, keyspace, replication)
    session.execute(f"DROP KEYSPACE {keyspace}")


def test_cassandra_restart_keeps_data(infra: Infra, settings: Settings) -> None:
    if infra.kind == "external":
        pytest.skip("the suite does not restart external clusters")
    assert settings.cassandra_hosts
    tenant = f"t-{uuid.uuid4()}"
    cluster, sess = connect(settings.cassandra_hosts, settings.cassandra_keyspace,
                            security=settings.cassandra_security)
    for i in range(50):
        sess.execute("INSERT INTO usage_by_period (tenant_id, period, meter, event_count) "
                     "VALUES (%s, '2026-11', %s, %s)", (tenant, f"m{i}", i))
    cluster.shutdown()

    infra.restart("cassandra")

    cluster, sess = connect(settings.cassandra_hosts, settings.cassandra_keyspace,
                            security=settings.cassandra_security)
    try:
        rows = sess.execute("SELECT meter, event_count FROM usage_by_period WHERE tenant_id=%s "
                            "AND period='2026-11'", (tenant,))
        assert {r.meter: r.event_count for r in rows} == {f"m{i}": i for i in range(50)}
    finally:
        cluster.shutdown()
