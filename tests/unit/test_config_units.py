"""Pure configuration logic: settings validation, topic specs, node layouts, migrations."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from ops.infra.cassandra import cassandra_nodes, cassandra_yaml, contact_points
from ops.infra.credentials import LocalCredentials, load_or_create
from ops.infra.kafka import bootstrap, kafka_nodes, new_cluster_id, server_properties
from ops.infra.tls import LocalTls
from processors.runtime.settings import Settings
from schemas.topics import ALL_TOPICS, USAGE
from storage.cassandra import ContactPoints
from storage.migrate import Migration, available

CREDENTIALS = LocalCredentials("meterly-pw", "broker-pw", "controller-pw", "cass-pw",
                               "default-pw")
TLS = LocalTls(Path("/tls/ca.pem"), Path("/tls/server.pem"))


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_the_local_kafka_authenticates_everyone_and_authorizes_by_acl(tmp_path: Path) -> None:
    nodes = kafka_nodes(1)
    props = _props(server_properties(nodes[0], nodes, tmp_path, CREDENTIALS, TLS))
    assert props["listeners"] == ("SASL_PLAINTEXT://127.0.0.1:9092,"
                                  "CONTROLLER://127.0.0.1:9093,SASL_SSL://127.0.0.1:9192")
    assert "PLAINTEXT://" not in props["listeners"].replace("SASL_PLAINTEXT://", "")
    assert set(props["listener.security.protocol.map"].split(",")) == {
        "CONTROLLER:SASL_PLAINTEXT", "SASL_PLAINTEXT:SASL_PLAINTEXT", "SASL_SSL:SASL_SSL"}
    assert props["listener.name.sasl_plaintext.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:broker;User:controller;User:meterly"
    assert 'password="broker-pw"' in props[
        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config"]
    assert props["listener.name.sasl_ssl.ssl.keystore.location"] == "/tls/server.pem"


def test_the_local_cassandra_takes_passwords_and_offers_tls(tmp_path: Path) -> None:
    (node,) = cassandra_nodes(1)
    yaml = cassandra_yaml(node, node, tmp_path, TLS)
    assert "authenticator: PasswordAuthenticator" in yaml
    assert "authorizer: CassandraAuthorizer" in yaml
    assert "optional: true" in yaml
    assert "keystore: /tls/server.pem" in yaml


def test_local_credentials_are_made_once_and_kept_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "infra" / "credentials.json"
    made = load_or_create(path)
    assert load_or_create(path) == made
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len({made.kafka_meterly, made.kafka_broker, made.cassandra_meterly}) == 3
    env = made.client_env()
    assert env["METERLY_KAFKA_SASL_PASSWORD"] == made.kafka_meterly
    assert Settings(kafka_bootstrap="h:1", **{
        k.removeprefix("METERLY_").lower(): v for k, v in env.items()}).cassandra_security \
        .username == "meterly"


def test_single_kafka_node_supports_transactions_with_one_replica(tmp_path: Path) -> None:
    nodes = kafka_nodes(1)
    props = _props(server_properties(nodes[0], nodes, tmp_path, CREDENTIALS, TLS))
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["offsets.topic.replication.factor"] == "1"
    assert bootstrap(nodes) == "127.0.0.1:9092"


def test_three_kafka_nodes_form_one_quorum_with_distinct_ports(tmp_path: Path) -> None:
    nodes = kafka_nodes(3, base_port=19092)
    all_ports = [p for n in nodes for p in (n.port, n.controller_port)]
    assert len(set(all_ports)) == 6
    voters = {_props(server_properties(n, nodes, tmp_path, CREDENTIALS, TLS))[
        "controller.quorum.voters"] for n in nodes}
    assert voters == {"1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097"}
    props = _props(server_properties(nodes[1], nodes, tmp_path, CREDENTIALS, TLS))
    assert props["min.insync.replicas"] == "2"
    assert props["transaction.state.log.replication.factor"] == "3"


def test_cluster_ids_are_url_safe_base64_of_16_bytes() -> None:
    # One id in 64 would start with '-' if drawn naively; the storage tool reads it as a flag.
    assert not any(new_cluster_id().startswith("-") for _ in range(2000))
    cid = new_cluster_id()
    assert len(cid) == 22
    assert "=" not in cid
    assert set(cid) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert new_cluster_id() != cid


def test_cassandra_cluster_nodes_share_ports_on_their_own_addresses(tmp_path: Path) -> None:
    nodes = cassandra_nodes(3)
    assert [n.address for n in nodes] == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    assert [n.jmx_port for n in nodes] == [7199, 7299, 7399]
    assert contact_points(nodes) == "127.0.0.1:9042,127.0.0.2:9042,127.0.0.3:9042"
    yaml = cassandra_yaml(nodes[2], nodes[0], tmp_path, TLS)
    assert 'seeds: "127.0.0.1:7000"' in yaml
    assert "listen_address: 127.0.0.3" in yaml


def test_contact_points_parse_and_refuse_mixed_ports() -> None:
    assert ContactPoints.parse("a:9142, b:9142") == ContactPoints(("a", "b"), 9142)
    assert ContactPoints.parse("a") == ContactPoints(("a",), 9042)
    with pytest.raises(ValueError, match="different ports"):
        ContactPoints.parse("a:1,b:2")
    with pytest.raises(ValueError, match="no Cassandra contact point"):
        ContactPoints.parse(" , ")


def test_settings_fail_fast_on_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERLY_PORT", "not-a-port")
    with pytest.raises(ValidationError, match="port"):
        Settings()
    monkeypatch.setenv("METERLY_PORT", "3000")
    monkeypatch.setenv("METERLY_TOPIC_PREFIX", "bad prefix/")
    with pytest.raises(ValidationError, match="topic prefix"):
        Settings()
    monkeypatch.setenv("METERLY_TOPIC_PREFIX", "ok.")
    monkeypatch.setenv("METERLY_CASSANDRA_KEYSPACE", "1-bad")
    with pytest.raises(ValidationError, match="keyspace"):
        Settings()


def test_configured_clusters_are_not_provisioned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERLY_KAFKA_BOOTSTRAP", "k1:9092")
    monkeypatch.delenv("METERLY_CASSANDRA_HOSTS", raising=False)
    s = Settings()
    assert not s.provisions_kafka
    assert s.provisions_cassandra


def test_topic_names_are_unique_and_versioned() -> None:
    names = [t.name for t in ALL_TOPICS]
    assert len(names) == len(set(names))
    assert all(n.rsplit(".", 1)[-1].startswith("v") for n in names)
    assert USAGE.full_name("p.") == "p.usage.v1"
    assert USAGE.config(3)["min.insync.replicas"] == "2"
    assert USAGE.config(1)["min.insync.replicas"] == "1"


def test_migrations_are_numbered_without_gaps_and_idempotent_statements() -> None:
    migrations = available()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    for m in migrations:
        for statement in m.statements():
            text = statement.upper()
            idempotent = ("IF EXISTS" if text.startswith("DROP ") else "IF NOT EXISTS") in text
            assert idempotent, statement


def test_migration_statements_split_and_drop_comments() -> None:
    m = Migration(1, "x", "-- a; comment\nCREATE TABLE a (x int PRIMARY KEY);\n\nSELECT 1;\n")
    assert m.statements() == ["CREATE TABLE a (x int PRIMARY KEY)", "SELECT 1"]
