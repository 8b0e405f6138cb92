"""A gateway's memory stays bounded whatever a caller sends (issue 14, bounded resources).

Real gateway processes, Kafka and Cassandra. The resident memory of the gateway process
(``/proc``) is read before and after each attack; the bounds stated here are the ones in
docs/security.md. Before ``gateway.guard`` and the byte-bounded idempotency cache, the same
attacks grew a gateway from 324 to 899 MB (one anonymous 200 MiB body) and by 191 MB (400
idempotent requests of one tenant): ``../shared/reviews/security.md`` H3, H4.
"""

from __future__ import annotations

import select
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from processors.runtime.settings import Settings
from tests.stack import Stack, rss, start_stack

pytestmark = pytest.mark.integration

MiB = 2**20
#: Growth of a gateway's resident memory allowed under each attack.
BODY_BOUND = 40 * MiB
IDEMPOTENCY_BOUND = 40 * MiB
#: The gateway's read deadlines in this module (gateway.server; 10 s and 30 s by default).
HEADER_TIMEOUT, BODY_TIMEOUT = 2.0, 3.0


@pytest.fixture(scope="module")
def stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(settings, tmp_path_factory.mktemp("stack"), gateways=1, extra_env={
            "METERLY_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
            "METERLY_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT)}) as running:
        yield running


def _send_body(port: int, head: bytes, body_bytes: int, chunked: bool) -> tuple[int, int]:
    """Send ``head`` then up to ``body_bytes`` of body, stopping as soon as the server
    answers; return (the answer's status, bytes of body sent)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(head)
        block = b"x" * (256 * 1024)
        while sent < body_bytes:
            if select.select([conn], [], [], 0)[0]:
                break  # the server has answered (or closed): stop sending
            piece = (f"{len(block):x}\r\n".encode() + block + b"\r\n") if chunked else block
            try:
                conn.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(block)
        if chunked and sent >= body_bytes:
            conn.sendall(b"0\r\n\r\n")
        answer = b""
        while b"\r\n" not in answer:
            data = conn.recv(65536)
            if not data:
                break
            answer += data
    return int(answer.split(b" ", 2)[1]), sent


def test_a_200_mib_body_is_refused_unread_and_the_gateway_stays_small(stack: Stack) -> None:
    gw = stack.gateways[0]
    before = rss(gw.proc.pid)
    size = 200 * MiB
    route = b"POST /v1/admin/tenants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    # Declared: 413 before authentication, from the header alone.
    status, sent = _send_body(gw.port, route + f"Content-Length: {size}\r\n\r\n".encode(),
                              size, chunked=False)
    assert status == 413
    assert sent < size
    # Chunked, no credentials: 401 before a byte of the body is read.
    status, sent = _send_body(gw.port, route + b"Transfer-Encoding: chunked\r\n\r\n", size,
                              chunked=True)
    assert status == 401
    assert sent < size
    # Chunked, with the operator token: read up to the 1 MiB limit, then 413.
    auth = f"Authorization: Bearer {stack.admin_token}\r\n".encode()
    status, sent = _send_body(gw.port, route + auth + b"Transfer-Encoding: chunked\r\n\r\n",
                              size, chunked=True)
    assert status == 413
    assert sent < size
    grown = rss(gw.proc.pid) - before
    print(f"gateway resident memory: {before / MiB:.0f} MiB before, grown {grown / MiB:.1f} "
          f"MiB under three 200 MiB bodies (bound {BODY_BOUND / MiB:.0f} MiB)")
    assert grown < BODY_BOUND
    with stack.client() as admin:
        assert admin.get("/v1/admin/tenants").status_code == 200
        big = admin.post("/v1/admin/tenants", content=b"[" + b" " * (2 * MiB) + b"]",
                         headers={"Content-Type": "application/json"})
        assert big.status_code == 413
        assert big.headers["content-type"].startswith("application/problem+json")
        assert big.json()["limit"] == MiB


def _events(n: int) -> list[dict[str, object]]:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return [{"specversion": "1.0", "id": f"e{i}", "source": "flood", "type": "api.calls",
             "time": now, "data": {"quantity": 1}} for i in range(n)]


def test_ten_thousand_idempotent_requests_of_one_tenant_stay_within_its_budget(
        stack: Stack) -> None:
    gw = stack.gateways[0]
    _quiet_id, quiet = stack.new_tenant("Quiet", rate_limit_per_second=100_000)
    _noisy_id, noisy = stack.new_tenant("Noisy", rate_limit_per_second=100_000)
    body = _events(150)  # the same 150 events each time: ~7 KB answers, nothing new to count
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        first = client.post("/v1/events", json=body[:1], headers={
            "Authorization": f"Bearer {quiet}", "Idempotency-Key": "quiet-1"})
        assert first.status_code == 200, first.text
        before = rss(gw.proc.pid)
        began = time.monotonic()
        headers = {"Authorization": f"Bearer {noisy}"}
        for i in range(10_000):
            answer = client.post("/v1/events", json=body,
                                 headers=headers | {"Idempotency-Key": f"n-{i}"})
            assert answer.status_code == 200, answer.text
        grown = rss(gw.proc.pid) - before
        print(f"10,000 idempotent requests in {time.monotonic() - began:.0f} s: gateway "
              f"grown {grown / MiB:.1f} MiB (bound {IDEMPOTENCY_BOUND / MiB:.0f} MiB; "
              f"{len(answer.content)} bytes an answer)")
        assert grown < IDEMPOTENCY_BOUND
        # The noisy tenant's newest answers replay; its oldest were evicted; the quiet
        # tenant's answer, older than all of them, was not touched by the flood.
        last = client.post("/v1/events", json=body,
                           headers=headers | {"Idempotency-Key": "n-9999"})
        assert last.headers.get("idempotent-replayed") == "true"
        oldest = client.post("/v1/events", json=body,
                             headers=headers | {"Idempotency-Key": "n-0"})
        assert oldest.status_code == 200
        assert "idempotent-replayed" not in oldest.headers
        again = client.post("/v1/events", json=body[:1], headers={
            "Authorization": f"Bearer {quiet}", "Idempotency-Key": "quiet-1"})
        assert again.headers.get("idempotent-replayed") == "true"
        assert again.json() == first.json()


def test_failed_authentication_is_throttled_per_address(stack: Stack) -> None:
    gw = stack.gateways[0]
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        # Tokens of the suite's other tests come from this address too: a fresh prefix
        # keeps this test's failures its own per key prefix, and 20 wrong tokens in a row
        # exhaust the address's bucket of 20.
        wrong = [client.get("/v1/admin/tenants",
                            headers={"Authorization": f"Bearer wrong-{uuid.uuid4().hex}"})
                 for _ in range(25)]
        codes = [w.status_code for w in wrong]
        assert codes[0] == 401, codes
        assert 429 in codes, codes
        refused = wrong[codes.index(429)]
        assert refused.json()["type"].endswith("/too-many-failed-authentications")
        assert int(refused.headers["Retry-After"]) >= 1
        # Refused before the credentials are looked at: the right token waits too.
        right = client.get("/v1/admin/tenants",
                           headers={"Authorization": f"Bearer {stack.admin_token}"})
        assert right.status_code == 429
        console = client.post("/console/login", data={"token": "wrong"},
                              headers={"Origin": gw.url})
        assert console.status_code == 401  # the console's sign-in has its own bucket


def _closed_within(conns: list[socket.socket], seconds: float) -> dict[socket.socket, float]:
    """When (seconds from now) the server closed each connection, for those it closed
    within ``seconds``; nothing is sent meanwhile."""
    began, closed = time.monotonic(), {}
    while len(closed) < len(conns) and time.monotonic() - began < seconds:
        ready, _, _ = select.select([c for c in conns if c not in closed], [], [], 0.2)
        for conn in ready:
            try:
                data = conn.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                closed[conn] = time.monotonic() - began
    return closed


def test_slow_headers_and_bodies_are_cut_while_others_are_served(stack: Stack) -> None:
    """Slowloris (review M6: 1,500 half-open connections held for ever). Connections that
    never finish their headers, trickle them, or never finish a body are closed at their
    deadline; a normal client is served meanwhile."""
    gw = stack.gateways[0]
    half_open = []
    for _ in range(300):
        conn = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        conn.sendall(b"GET /v1/usage HTTP/1.1\r\nHost: x\r\n")  # headers never end
        half_open.append(conn)
    trickler = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    trickler.sendall(b"GET /v1/usage HTTP/1.1\r\n")
    slow_body = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    slow_body.sendall(b"POST /v1/admin/tenants HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 100\r\n"
                      + f"Authorization: Bearer {stack.admin_token}\r\n\r\n{{".encode())
    began = time.monotonic()
    with httpx.Client(base_url=gw.url, timeout=10) as client:
        assert client.get("/healthz").status_code == 200
    # One header byte every 0.25 s does not move the deadline.
    trickled_until = None
    while time.monotonic() - began < HEADER_TIMEOUT + 2:
        try:
            trickler.sendall(b"X")
        except (BrokenPipeError, ConnectionResetError):
            trickled_until = time.monotonic() - began
            break
        if select.select([trickler], [], [], 0.25)[0] and not trickler.recv(65536):
            trickled_until = time.monotonic() - began
            break
    assert trickled_until is not None, "a trickling client kept its connection"
    assert HEADER_TIMEOUT - 0.5 < trickled_until < HEADER_TIMEOUT + 2
    closed = _closed_within([*half_open, slow_body], BODY_TIMEOUT + HEADER_TIMEOUT + 5)
    cut = sum(c in closed for c in half_open)
    waited = time.monotonic() - began
    print(f"{cut} of {len(half_open)} half-open connections cut; the trickler at "
          f"{trickled_until:.1f} s, the slow body by {waited:.1f} s (deadlines "
          f"{HEADER_TIMEOUT} s and {BODY_TIMEOUT} s)")
    assert cut == len(half_open)
    assert slow_body in closed, "a body that never ends kept its connection"
    for conn in (*half_open, trickler, slow_body):
        conn.close()
    with httpx.Client(base_url=gw.url, timeout=10) as client:
        assert client.get("/healthz").status_code == 200
