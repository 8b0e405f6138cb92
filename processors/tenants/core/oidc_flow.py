"""The rules of the console's OpenID Connect sign-in (authorization code flow with PKCE),
without the HTTP. Pure.

1. ``begin``: a random ``state`` (ties the callback to this browser), ``nonce`` (ties the ID
   token to this sign-in) and PKCE verifier (RFC 7636, S256), kept in a short-lived cookie
   signed with the console's session key; the browser goes to the provider's authorization
   endpoint with ``authorization_url``.
2. The provider sends the browser back with ``code`` and ``state``; ``open_flow`` checks the
   cookie's signature and age and that its state is the one that came back.
3. The gateway trades the code (with the verifier and its client secret) for an ID token and
   checks its signature against the provider's JWKS (``gateway.oidc``); ``check_claims`` then
   holds the claims to the issuer, the audience, the nonce and a verified e-mail address,
   which names the operator (registered with ``POST /v1/admin/operators {"email": ...}``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson

FLOW_SECONDS = 600
_CONTEXT = b"meterly-oidc-flow-v1\n"


class FlowError(ValueError):
    """A sign-in that must not go on; the message says why, for the person signing in."""


@dataclass(frozen=True)
class Flow:
    state: str
    nonce: str
    verifier: str
    started: int

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def begin(now: float | None = None) -> Flow:
    return Flow(secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48),
                int(time.time() if now is None else now))


def authorization_url(endpoint: str, client_id: str, redirect_uri: str, scopes: str,
                      flow: Flow) -> str:
    query = urlencode({"response_type": "code", "client_id": client_id,
                       "redirect_uri": redirect_uri, "scope": scopes, "state": flow.state,
                       "nonce": flow.nonce, "code_challenge": flow.challenge,
                       "code_challenge_method": "S256"})
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def seal_flow(flow: Flow, key: bytes) -> str:
    body = _b64(orjson.dumps([flow.state, flow.nonce, flow.verifier, flow.started]))
    sig = hmac.new(key, _CONTEXT + body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{sig}"


def open_flow(cookie: str, keys: tuple[bytes, ...], state: str, now: float) -> Flow:
    """The flow in ``cookie`` if one of ``keys`` signed it, it is recent, and ``state`` is its
    own; FlowError otherwise."""
    body, _, sig = cookie.partition(".")
    if not body or not any(hmac.compare_digest(
            hmac.new(k, _CONTEXT + body.encode(), hashlib.sha256).hexdigest(), sig)
            for k in keys):
        raise FlowError("the sign-in was not started from this browser; start it again")
    try:
        fields = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        flow = Flow(str(fields[0]), str(fields[1]), str(fields[2]), int(fields[3]))
    except (ValueError, TypeError, IndexError, orjson.JSONDecodeError):
        raise FlowError("the sign-in's state is damaged; start it again") from None
    if now - flow.started > FLOW_SECONDS:
        raise FlowError("the sign-in took longer than 10 minutes; start it again")
    if not hmac.compare_digest(flow.state.encode(), state.encode()):
        raise FlowError("the identity provider answered for another sign-in; start again")
    return flow


def check_claims(claims: Mapping[str, Any], issuer: str, client_id: str, flow: Flow) -> str:
    """The verified e-mail address (lower case) the ID token's ``claims`` name, once they
    are for this issuer, this client and this sign-in. The signature and ``exp`` were
    checked already (PyJWT, with ``aud`` and ``iss``); these are checked again here so that
    the rules are all in one place and tested."""
    if claims.get("iss") != issuer:
        raise FlowError("the ID token comes from another issuer")
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if client_id not in audiences:
        raise FlowError("the ID token is for another client")
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise FlowError("the ID token has several audiences and is not authorized for us")
    if claims.get("nonce") != flow.nonce:
        raise FlowError("the ID token belongs to another sign-in")
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise FlowError("the identity provider gave no e-mail address (ask for the "
                        "'email' scope)")
    if claims.get("email_verified") is not True:
        raise FlowError(f"the identity provider has not verified {email}")
    return email.lower()
