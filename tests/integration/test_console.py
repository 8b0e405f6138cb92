"""The console in a real headless Chromium: sign in, create a tenant and a key, call the
metered endpoint from the "try it" panel, see the counter move and the usage chart; the API
reference at /docs.

The browser may reach the gateway's own origin only: every other request is aborted and
recorded, and a page that asks for anything else, or breaks its Content-Security-Policy,
fails the test. Screenshots of each step are kept in ``test-artifacts/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import ConsoleMessage, Page, Route, expect, sync_playwright

from processors.runtime.settings import Settings
from tests.oidc_issuer import CLIENT_ID, CLIENT_SECRET, Issuer
from tests.stack import ALL_WORKERS, Stack, start_stack, wait_until
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.integration
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# /dev/shm is small on CI machines and containers: Chromium crashes its tabs without
# --disable-dev-shm-usage under load.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    """A local OpenID Connect provider with an RSA key made for this run."""
    running = Issuer().start()
    yield running
    running.close()


@pytest.fixture(scope="module")
def stack(settings: Settings, issuer: Issuer,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(
            settings, tmp_path_factory.mktemp("console"), gateways=1,
            workers=ALL_WORKERS,
            extra_env={"METERLY_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
                       "METERLY_WEBHOOK_RETRY_SCHEDULE": "0.5",
                       "METERLY_OIDC_ISSUER": issuer.url, "METERLY_OIDC_CLIENT_ID": CLIENT_ID,
                       "METERLY_OIDC_CLIENT_SECRET": CLIENT_SECRET}) as running:
        yield running


@pytest.fixture
def page(stack: Stack) -> Iterator[Page]:
    chromium = os.environ.get("METERLY_CHROMIUM") or shutil.which("chromium")
    assert chromium, "the console tests need Debian's chromium (ops/test.sh installs it)"
    # The gateway, and the identity provider the SSO sign-in goes through.
    origins = (stack.gateways[0].url + "/", stack.env["METERLY_OIDC_ISSUER"] + "/")
    outside: list[str] = []
    refused: list[str] = []

    def only_the_gateway(route: Route) -> None:
        url = route.request.url
        # Chromium's own PDF viewer loads chrome:// and chrome-extension:// resources.
        if url.startswith(origins) or not url.startswith(("http:", "https:", "ws:", "wss:")):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    def csp_violations(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            refused.append(message.text)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            opened = browser.new_page(viewport={"width": 1280, "height": 900})
            opened.route("**/*", only_the_gateway)
            opened.on("console", csp_violations)
            yield opened
        finally:
            browser.close()
    assert not outside, f"the pages asked for other origins: {outside}"
    assert not refused, f"the pages broke their Content-Security-Policy: {refused}"


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)


def sign_in(page: Page, stack: Stack) -> None:
    page.goto(stack.gateways[0].url + "/console/login")
    page.fill("#token", stack.admin_token)
    page.click("#sign-in")
    page.wait_for_url(stack.gateways[0].url + "/console")


def test_sign_in_tenant_key_try_it_and_usage(stack: Stack, page: Page) -> None:
    base = stack.gateways[0].url
    page.goto(base + "/")
    assert page.url.endswith("/console/login")
    page.fill("#token", "not-the-token")
    page.click("#sign-in")
    assert "not an operator token" in page.inner_text("#error")
    page.fill("#token", stack.admin_token)
    page.click("#sign-in")
    page.wait_for_url(base + "/console")
    shot(page, "1-tenants")

    page.fill("#tenant-name", "Browser Ltd")
    page.fill("#tenant-email", "billing@browser.example")
    page.click("#create-tenant")
    page.wait_for_selector("#create-key")
    assert "Tenant Browser Ltd created." in page.inner_text("#notice")
    page.click("#create-key")
    key = page.inner_text("#new-key").strip()
    assert key.startswith("mtr_")
    shot(page, "2-new-key")

    assert page.input_value("#try-key") == key
    page.fill("#try-meter", "search")
    page.click("#try-call")
    # (Not wait_for_function: it evaluates a string, which the pages' CSP refuses.)
    expect(page.locator("#try-status")).to_have_text("counted", timeout=30_000)
    assert page.inner_text("#try-count") == "1"
    shot(page, "3-try-it")

    tenant_url = page.url.split("?")[0].removesuffix("/keys")
    assert key not in page.url  # the raw key is never put in a URL

    def chart() -> bool:
        page.goto(tenant_url)
        return page.locator("svg rect").count() > 0 and "search" in page.inner_text("main")

    wait_until("the usage chart", chart, timeout=30, every=1.0)
    assert page.locator("svg[aria-label='usage per day'] title", has_text=": 1").count() == 1
    shot(page, "4-usage")

    # A producer numbering its events, with 3 and 4 missing: the gap is on the page.
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    with stack.client(token=key) as client:
        sent = client.post("/v1/events", json=[
            {"specversion": "1.0", "id": f"seq-{n}", "source": "exporter", "type": "search",
             "time": now, "sequence": str(n)} for n in (1, 2, 5)])
        assert sent.status_code == 200, sent.text

    def gap_shown() -> bool:
        page.goto(tenant_url)
        return "3\u20134" in page.inner_text("main")

    wait_until("the gap on the tenant page", gap_shown, timeout=30, every=1.0)

    # A signed-out browser is sent to the sign-in page, never shown the console.
    page.context.clear_cookies()
    page.goto(tenant_url)
    assert page.url.endswith("/console/login")


def test_invoices_webhook_log_dead_letters_and_suspend(stack: Stack, page: Page) -> None:
    with stack.client() as admin:
        assert admin.post("/v1/admin/plans", json={
            "name": "console", "currency": "EUR", "flat_fee": "9.00",
            "prices": {"search": {"model": "per_unit", "unit_price": "0.05"}}}).status_code == 201
    tenant, key = stack.new_tenant("Invoiced Oy", plan="console")
    receiver = Receiver()
    receiver.mode = "fail"
    try:
        receiver.start()
        # The endpoint is added in the console; its secret is shown once.
        sign_in(page, stack)
        page.goto(f"{stack.gateways[0].url}/console/tenants/{tenant}")
        page.fill("#webhook-url", receiver.url)
        page.click("#create-webhook")
        assert page.inner_text("#new-secret").startswith("whsec_")
        with stack.client() as admin:
            assert len(admin.get(f"/v1/admin/tenants/{tenant}/webhooks").json()) == 1
            closing = admin.post("/v1/admin/billing/close", json={
                "period": datetime.now(UTC).strftime("%Y-%m"), "tenant_ids": [tenant]})
            assert closing.status_code == 202, closing.text
            invoice_id = closing.json()["invoices"][tenant]
        with stack.client(token=key) as client:
            wait_until("the invoice PDF", lambda: client.get(
                f"/v1/invoices/{invoice_id}").json().get("pdf_url"), timeout=90)
        # invoice.finalized fails twice (500, one retry) and is dead-lettered.
        with stack.client() as admin:
            wait_until("the dead letter", lambda: [
                d for d in admin.get("/v1/admin/webhooks/dead-letter").json()
                if d["tenant_id"] == tenant], timeout=60)

        def dead_lettered_shown() -> bool:
            # The attempt's log row and the dead letter are written side by side.
            page.goto(f"{stack.gateways[0].url}/console/tenants/{tenant}")
            return "dead_lettered" in page.inner_text("main")

        wait_until("the dead-lettered attempt in the log", dead_lettered_shown, timeout=30,
                   every=1.0)
        page.click("text=preview")
        frame = page.locator("iframe[title='invoice preview']")
        src = frame.get_attribute("src")
        assert src == f"/console/tenants/{tenant}/invoices/{invoice_id}.pdf"
        pdf = page.request.get(stack.gateways[0].url + src)
        assert pdf.status == 200
        assert pdf.headers["content-type"] == "application/pdf"
        assert pdf.body().startswith(b"%PDF")
        shot(page, "5-invoice-and-webhooks")

        # The replay button sends the delivery again: the receiver sees a new attempt, which
        # fails too and is dead-lettered again (one retry).
        with stack.client() as admin:
            [endpoint] = admin.get(f"/v1/admin/tenants/{tenant}/webhooks").json()

            def outcomes() -> list[str]:
                return [a["outcome"] for a in admin.get(
                    f"/v1/admin/tenants/{tenant}/webhooks/{endpoint['id']}/deliveries").json()]

            dead_before = outcomes().count("dead_lettered")
            seen = len(receiver.received)
            page.locator("form[action*='/replay/'] button").first.click()
            assert "replayed" in page.inner_text("#notice")
            wait_until("the replayed attempt", lambda: len(receiver.received) > seen,
                       timeout=30)
            wait_until("the replay dead-lettered again", lambda: outcomes().count(
                "dead_lettered") > dead_before, timeout=30)
            assert "delivered" not in outcomes()
            # "Replay all" on the dead-letter page, with the receiver answering now: the
            # delivery arrives and is logged as delivered.
            receiver.mode = "ok"
            page.goto(f"{stack.gateways[0].url}/console/dead-letter")
            assert tenant in page.inner_text("main")
            shot(page, "6-dead-letters")
            page.click("#replay-all")
            assert "Replayed" in page.inner_text("#notice")
            wait_until("the delivery replayed by 'replay all'",
                       lambda: "delivered" in outcomes(), timeout=30)

        page.goto(f"{stack.gateways[0].url}/console")
        page.locator(f"form[action='/console/tenants/{tenant}/status/suspend'] button").click()
        assert "suspended" in page.inner_text("#notice")
        with stack.client(token=key) as client:
            assert client.get("/v1/resources/search").status_code == 403
    finally:
        receiver.close()


def test_api_reference_renders_from_the_gateway_alone(stack: Stack, page: Page) -> None:
    base = stack.gateways[0].url
    answer = page.goto(base + "/docs")
    assert answer is not None
    assert answer.status == 200
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "default-src 'self'" in policy
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "Meterly" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector(".opblock-summary-path")
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/v1/events" in paths, paths
    assert "/v1/admin/tenants" in paths, paths
    shot(page, "7-api-reference")
    # The console's own pages carry the same policy.
    login = page.goto(base + "/console/login")
    assert login is not None
    assert login.headers["content-security-policy"] == policy


def test_sso_sign_in_with_openid_connect_and_its_refusals(stack: Stack, issuer: Issuer,
                                                          page: Page) -> None:
    """Through the browser: the console's "Sign in with SSO" to the local provider and
    back, as the billing operator registered under the provider's verified address."""
    base = stack.gateways[0].url
    with stack.client() as admin:
        made = admin.post("/v1/admin/operators", json={
            "name": "Finance via SSO", "role": "billing", "email": "Ops@Acme.test"})
        assert made.status_code == 201, made.text
        assert made.json()["token"] is None
    issued = issuer.tokens_issued

    def sso() -> None:
        page.goto(base + "/console/login")
        page.click("#sso")
        page.wait_for_url(issuer.url + "/authorize**")
        page.click("#approve")

    sso()
    page.wait_for_url(base + "/console")
    assert issuer.tokens_issued == issued + 1
    shot(page, "8-sso-signed-in")
    # Signed in with the billing role: pages yes, changes no.
    page.goto(base + "/console/audit")
    assert "console.signed_in" in page.inner_text("#audit")
    assert "Finance via SSO" in page.inner_text("#audit")
    page.goto(base + "/console")
    page.fill("#tenant-name", "Not Allowed Ltd")
    page.fill("#tenant-email", "billing@nope.example")
    page.click("#create-tenant")
    assert "take the admin role" in page.inner_text("#error")
    page.goto(base + "/console")
    page.click("text=Sign out")
    page.wait_for_url(base + "/console/login")

    for misbehaviour, email, verified, message in (
            (None, "stranger@acme.test", True, "no operator signs in as stranger@acme.test"),
            ("key", "ops@acme.test", True, "does not check out"),
            ("audience", "ops@acme.test", True, "does not check out"),
            ("nonce", "ops@acme.test", True, "another sign-in"),
            (None, "ops@acme.test", False, "not verified")):
        issuer.forge, issuer.email, issuer.email_verified = misbehaviour, email, verified
        sso()
        page.wait_for_url(base + "/console/oidc/callback**")
        assert message in page.inner_text("#error"), (misbehaviour, email)
        page.goto(base + "/console")
        assert page.url.endswith("/console/login"), "a refused sign-in signed someone in"
    issuer.forge, issuer.email, issuer.email_verified = None, "ops@acme.test", True
