"""A local OpenID Connect provider for tests: discovery, JWKS, an authorization page and a
token endpoint, with an RSA key the test makes. It implements what a standard provider does
for the authorization code flow with PKCE (S256) and ``client_secret_post``, and can be told
to misbehave (another audience, nonce or signing key; an unverified address) so the tests
can show each refusal.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

CLIENT_ID = "meterly-console"
CLIENT_SECRET = "test-client-secret-" + "x" * 16
#: A machine client (the OAuth 2 client-credentials grant): Meterly's Kafka clients.
SERVICE_ID = "meterly-kafka"
SERVICE_SECRET = "test-service-secret-" + "y" * 16
#: The audience of the access tokens the client-credentials grant issues.
SERVICE_AUDIENCE = "kafka"


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    nonce: str
    challenge: str
    email: str


@dataclass
class Issuer:
    """Serve with ``start()``; ``url`` is the issuer. ``email`` is who signs in."""

    email: str = "ops@acme.test"
    email_verified: bool = True
    #: Misbehaviour for refusal tests: "audience", "nonce", "key", "issuer" or None.
    forge: str | None = None
    tokens_issued: int = 0
    grants: dict[str, Grant] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "test-" + secrets.token_hex(4)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> Issuer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _id_token(self, grant: Grant) -> str:
        now = int(time.time())
        claims = {"iss": self.url, "sub": "user-" + hashlib.sha256(grant.email.encode()
                                                                  ).hexdigest()[:12],
                  "aud": grant.client_id, "iat": now, "exp": now + 300, "nonce": grant.nonce,
                  "email": grant.email, "email_verified": self.email_verified}
        if self.forge == "audience":
            claims["aud"] = "another-client"
        if self.forge == "nonce":
            claims["nonce"] = "another-sign-in"
        if self.forge == "issuer":
            claims["iss"] = "https://evil.example"
        key = self.other_key if self.forge == "key" else self.key
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": self.kid})

    def _access_token(self, client_id: str, scope: str | None) -> str:
        now = int(time.time())
        claims = {"iss": self.url, "sub": client_id, "aud": SERVICE_AUDIENCE, "iat": now,
                  "exp": now + 300, **({"scope": scope} if scope else {})}
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def _json(self, status: int, doc: object) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if parts.path == "/.well-known/openid-configuration":
                    self._json(200, {
                        "issuer": issuer.url, "authorization_endpoint": f"{issuer.url}/authorize",
                        "token_endpoint": f"{issuer.url}/token", "jwks_uri": f"{issuer.url}/jwks",
                        "response_types_supported": ["code"],
                        "subject_types_supported": ["public"],
                        "id_token_signing_alg_values_supported": ["RS256"],
                        "code_challenge_methods_supported": ["S256"]})
                elif parts.path == "/jwks":
                    jwk = json.loads(RSAAlgorithm.to_jwk(issuer.key.public_key()))
                    self._json(200, {"keys": [{**jwk, "kid": issuer.kid, "use": "sig",
                                               "alg": "RS256"}]})
                elif parts.path == "/authorize":
                    if query.get("response_type") != "code" or \
                            query.get("code_challenge_method") != "S256":
                        self._json(400, {"error": "invalid_request"})
                        return
                    code = secrets.token_urlsafe(16)
                    issuer.grants[code] = Grant(query["client_id"], query["redirect_uri"],
                                                query["nonce"], query["code_challenge"],
                                                issuer.email)
                    target = html.escape(query["redirect_uri"] + "?" + urlencode(
                        {"code": code, "state": query["state"]}), quote=True)
                    page = (f"<!doctype html><title>Test IdP</title><h1>Test identity provider"
                            f"</h1><p>Sign in to Meterly as {html.escape(issuer.email)}?</p>"
                            f'<a id="approve" href="{target}">Approve</a>').encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                if self.path != "/token":
                    self._json(404, {"error": "not_found"})
                    return
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if form.get("grant_type") == "client_credentials":
                    self._client_credentials(form)
                    return
                grant = issuer.grants.pop(form.get("code", ""), None)
                if grant is None or form.get("grant_type") != "authorization_code":
                    self._json(400, {"error": "invalid_grant"})
                    return
                if form.get("client_id") != grant.client_id or \
                        form.get("client_secret") != CLIENT_SECRET:
                    self._json(401, {"error": "invalid_client"})
                    return
                if form.get("redirect_uri") != grant.redirect_uri:
                    self._json(400, {"error": "invalid_grant",
                                     "error_description": "redirect_uri differs"})
                    return
                digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
                if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant.challenge:
                    self._json(400, {"error": "invalid_grant",
                                     "error_description": "PKCE verifier does not match"})
                    return
                issuer.tokens_issued += 1
                self._json(200, {"access_token": secrets.token_urlsafe(16),
                                 "token_type": "Bearer", "expires_in": 300,
                                 "id_token": issuer._id_token(grant)})

            def _client_credentials(self, form: dict[str, str]) -> None:
                # client_secret_basic (librdkafka) or client_secret_post (aiokafka's provider).
                basic = self.headers.get("Authorization", "")
                client_id, secret = form.get("client_id"), form.get("client_secret")
                if basic.startswith("Basic "):
                    client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
                if client_id != SERVICE_ID or secret != SERVICE_SECRET:
                    self._json(401, {"error": "invalid_client"})
                    return
                issuer.tokens_issued += 1
                self._json(200, {"access_token": issuer._access_token(client_id,
                                                                      form.get("scope")),
                                 "token_type": "Bearer", "expires_in": 300})

        return Handler
