"""OpenID Connect for the console: discovery, the code exchange and ID token signatures.

The rules are in ``processors.tenants.core.oidc_flow``; this module talks to the provider:

1. ``provider``: the issuer's discovery document (``/.well-known/openid-configuration``),
   fetched once and kept; its ``issuer`` must be the configured one.
2. ``exchange``: POST the code, the PKCE verifier and the client credentials
   (``client_secret_post``) to the token endpoint; an answer without ``id_token`` fails.
3. ``verify``: the ID token's signature against the provider's JWKS (PyJWT, which fetches
   and caches the keys), with ``exp``, ``iat``, ``aud`` and ``iss`` checked, and asymmetric
   algorithms only (an ``HS256`` or ``none`` token is refused).

Works with any standard provider (Keycloak, Okta, Auth0, Google, Entra ID, Dex, ...):
``METERLY_OIDC_ISSUER``, ``METERLY_OIDC_CLIENT_ID``, ``METERLY_OIDC_CLIENT_SECRET``, and the
redirect URI ``<METERLY_PUBLIC_URL>/console/oidc/callback`` registered with the provider.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from starlette.concurrency import run_in_threadpool

from processors.runtime.settings import Settings
from processors.tenants.core.oidc_flow import FlowError

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
              "ES512", "EdDSA"]


@dataclass(frozen=True)
class Provider:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


class OidcClient:
    def __init__(self, settings: Settings) -> None:
        assert settings.oidc_issuer
        assert settings.oidc_client_id
        self.issuer = settings.oidc_issuer.rstrip("/")
        self.client_id = settings.oidc_client_id
        self.client_secret = settings.oidc_client_secret or ""
        self.scopes = settings.oidc_scopes
        self.redirect_uri = f"{settings.public_base_url}/console/oidc/callback"
        self._provider: Provider | None = None
        self._jwks: jwt.PyJWKClient | None = None

    async def provider(self) -> Provider:
        if self._provider is None:
            url = f"{self.issuer}/.well-known/openid-configuration"
            try:
                async with httpx.AsyncClient(timeout=10) as http:
                    answer = await http.get(url)
                answer.raise_for_status()
                doc: dict[str, Any] = answer.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise FlowError(f"the identity provider's discovery document ({url}) could "
                                f"not be read: {exc}") from None
            if doc.get("issuer", "").rstrip("/") != self.issuer:
                raise FlowError(f"the discovery document names issuer {doc.get('issuer')!r}, "
                                f"not {self.issuer!r}")
            self._provider = Provider(doc["issuer"], doc["authorization_endpoint"],
                                      doc["token_endpoint"], doc["jwks_uri"])
            self._jwks = jwt.PyJWKClient(doc["jwks_uri"], cache_keys=True, lifespan=3600,
                                         timeout=10)
        return self._provider

    async def exchange(self, code: str, verifier: str) -> str:
        provider = await self.provider()
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                answer = await http.post(provider.token_endpoint, data={
                    "grant_type": "authorization_code", "code": code,
                    "redirect_uri": self.redirect_uri, "code_verifier": verifier,
                    "client_id": self.client_id, "client_secret": self.client_secret})
            doc: dict[str, Any] = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise FlowError(f"the identity provider's token endpoint failed: {exc}") from None
        if answer.status_code != 200 or not isinstance(doc.get("id_token"), str):
            why = doc.get("error_description") or doc.get("error") or answer.status_code
            raise FlowError(f"the identity provider refused the code: {why}")
        token: str = doc["id_token"]
        return token

    async def verify(self, id_token: str) -> dict[str, Any]:
        provider = await self.provider()
        assert self._jwks is not None
        jwks = self._jwks

        def check() -> dict[str, Any]:
            key = jwks.get_signing_key_from_jwt(id_token)
            claims: dict[str, Any] = jwt.decode(
                id_token, key=key.key, algorithms=ALGORITHMS, audience=self.client_id,
                issuer=provider.issuer, options={"require": ["exp", "iat", "iss", "aud"]},
                leeway=30)
            return claims

        try:
            return await run_in_threadpool(check)
        except jwt.PyJWTError as exc:
            raise FlowError(f"the ID token does not check out: {exc}") from None
