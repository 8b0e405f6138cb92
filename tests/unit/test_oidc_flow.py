"""The OpenID Connect sign-in's rules: PKCE, the flow cookie, the ID token's claims."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import pytest

from processors.tenants.core import oidc_flow
from processors.tenants.core.oidc_flow import FlowError

KEY, OLD = b"k" * 32, b"o" * 32
ISSUER, CLIENT = "https://idp.example", "meterly"


def test_pkce_s256_and_the_authorization_url() -> None:
    flow = oidc_flow.begin(now=1000)
    digest = hashlib.sha256(flow.verifier.encode()).digest()
    assert flow.challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert 43 <= len(flow.verifier) <= 128  # RFC 7636
    url = oidc_flow.authorization_url("https://idp.example/auth?tenant=x", CLIENT,
                                      "https://m.example/console/oidc/callback",
                                      "openid email", flow)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query == {"tenant": "x", "response_type": "code", "client_id": CLIENT,
                     "redirect_uri": "https://m.example/console/oidc/callback",
                     "scope": "openid email", "state": flow.state, "nonce": flow.nonce,
                     "code_challenge": flow.challenge, "code_challenge_method": "S256"}
    assert flow.verifier not in url
    assert oidc_flow.begin().state != oidc_flow.begin().state


def test_the_flow_cookie_opens_only_for_its_state_while_fresh() -> None:
    flow = oidc_flow.begin(now=1000)
    cookie = oidc_flow.seal_flow(flow, OLD)
    assert oidc_flow.open_flow(cookie, (KEY, OLD), flow.state, 1000 + 599) == flow
    with pytest.raises(FlowError, match="10 minutes"):
        oidc_flow.open_flow(cookie, (KEY, OLD), flow.state, 1000 + 601)
    with pytest.raises(FlowError, match="another sign-in"):
        oidc_flow.open_flow(cookie, (KEY, OLD), "other-state", 1001)
    with pytest.raises(FlowError, match="not started from this browser"):
        oidc_flow.open_flow(cookie, (KEY,), flow.state, 1001)
    body, _, sig = cookie.partition(".")
    forged = oidc_flow.seal_flow(oidc_flow.Flow(flow.state, "n", "v", 1000), b"x" * 32)
    with pytest.raises(FlowError, match="not started from this browser"):
        oidc_flow.open_flow(forged, (KEY, OLD), flow.state, 1001)
    with pytest.raises(FlowError, match="not started from this browser"):
        oidc_flow.open_flow(body + "." + sig[:-1] + "0", (OLD,), flow.state, 1001)
    with pytest.raises(FlowError):
        oidc_flow.open_flow("", (OLD,), flow.state, 1001)


def _claims(flow: oidc_flow.Flow, **changes: object) -> dict[str, object]:
    claims: dict[str, object] = {"iss": ISSUER, "aud": CLIENT, "nonce": flow.nonce,
                                 "email": "Ops@Acme.test", "email_verified": True}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"iss": "https://evil.example"}, "another issuer"), ({"aud": "other"}, "another client"),
     ({"aud": [CLIENT, "other"]}, "several audiences"), ({"nonce": "x"}, "another sign-in"),
     ({"email": None}, "no e-mail"), ({"email_verified": False}, "not verified"),
     ({"email_verified": None}, "not verified"), ({"email_verified": "true"}, "not verified")],
)
def test_claims_that_do_not_name_this_sign_in_are_refused(changes: dict[str, object],
                                                          message: str) -> None:
    flow = oidc_flow.begin()
    with pytest.raises(FlowError, match=message):
        oidc_flow.check_claims(_claims(flow, **changes), ISSUER, CLIENT, flow)


def test_good_claims_give_the_address_in_lower_case() -> None:
    flow = oidc_flow.begin()
    assert oidc_flow.check_claims(_claims(flow), ISSUER, CLIENT, flow) == "ops@acme.test"
    several = _claims(flow, aud=[CLIENT, "other"], azp=CLIENT)
    assert oidc_flow.check_claims(several, ISSUER, CLIENT, flow) == "ops@acme.test"
