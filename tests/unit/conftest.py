"""Unit tests run with the network blocked (pytest-socket): a unit test that reaches for a
broker, a node or the internet fails instead of passing by luck. Unix sockets stay allowed
(asyncio's event loop uses a socket pair); a test marked ``loopback`` may use 127.0.0.1
only. Sockets are enabled again after each unit test, so integration tests in the same run
are unaffected."""

from __future__ import annotations

import os

import pytest
from pytest_socket import disable_socket, enable_socket, socket_allow_hosts


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("loopback"):
        socket_allow_hosts(["127.0.0.1"], allow_unix_socket=True)
    else:
        disable_socket(allow_unix_socket=True)


def pytest_runtest_teardown(item: pytest.Item) -> None:
    enable_socket()


@pytest.fixture(autouse=True)
def _no_deployment_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests read no deployment's settings: the integration tests of the same run put
    the provisioned clusters' addresses and credentials into the environment
    (``tests.infra.LocalInfra.start``), and a unit test of the settings must see only what
    it sets itself."""
    from processors.runtime.settings import get_settings

    for name in list(os.environ):
        if name.startswith(("METERLY_KAFKA_", "METERLY_CASSANDRA_")):
            monkeypatch.delenv(name)
    get_settings.cache_clear()
