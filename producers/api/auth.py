"""Who is calling: an API key, or a Microsoft Entra ID access token checked in the app.

The caller's identity comes only from a credential the API can verify, never from a header the
client could simply set:

- ``X-API-Key: <key>``: the key's SHA-256 is looked up in the registry;
- ``Authorization: Bearer <token>``: the token's signature is checked against the tenant's JWKS
  (fetched from Entra, cached, and fetched again when a token names a key id the cache does not
  hold, which is how Entra's key rollover reaches us), then issuer, audience, expiry and
  not-before; the client is the application id in ``azp`` (v2.0 tokens) or ``appid`` (v1.0
  tokens, what a managed identity gets by default).

Every failure is a 401 problem with one line that says what to fix, and never echoes the key or
the token.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final

import jwt

from postbus.producers.api.clients import Client, ClientRegistry
from postbus.producers.api.problems import Problem

__all__ = ["DEFAULT_AUTHORITY", "Authenticator", "EntraConfig", "TokenVerifier"]

DEFAULT_AUTHORITY: Final = "https://login.microsoftonline.com"
#: Entra signs with RS256; anything else in a token header is refused before any key is fetched.
_ALGORITHMS: Final = ["RS256"]
#: Clock skew allowed on ``exp``/``nbf``.
_LEEWAY_SECONDS: Final = 60
#: A fresh JWKS fetch for an unknown key id at most this often, so forged key ids cannot make us
#: hammer the tenant's key endpoint.
_MIN_REFRESH_SECONDS: Final = 30.0
_WWW_AUTHENTICATE: Final = {"WWW-Authenticate": 'Bearer, ApiKey header="X-API-Key"'}


@dataclass(frozen=True, slots=True)
class EntraConfig:
    """The tenant whose tokens are accepted and the audiences (Application ID URI, client id)."""

    tenant_id: str
    audiences: tuple[str, ...]
    authority: str = DEFAULT_AUTHORITY

    @property
    def jwks_url(self) -> str:
        """The tenant's signing keys."""
        return f"{self.authority.rstrip('/')}/{self.tenant_id}/discovery/v2.0/keys"

    @property
    def issuers(self) -> tuple[str, ...]:
        """v2.0 and v1.0 issuers of the tenant (a token's version follows the app registration)."""
        base = self.authority.rstrip("/")
        v1 = (
            f"https://sts.windows.net/{self.tenant_id}/"
            if base == DEFAULT_AUTHORITY
            else f"{base}/{self.tenant_id}/"
        )
        return (f"{base}/{self.tenant_id}/v2.0", v1)


def _unauthenticated(detail: str) -> Problem:
    return Problem("unauthenticated", detail, field="Authorization", headers=_WWW_AUTHENTICATE)


class TokenVerifier:
    """Validates Entra access tokens against the tenant's JWKS; the key fetch runs off the event loop.

    PyJWT's ``PyJWKClient`` caches the key set for ``cache_seconds`` and fetches it again when a
    token names an unknown key id, at most once per ``refresh_cooldown_seconds`` (so forged key
    ids cannot make us hammer the tenant's key endpoint).
    """

    def __init__(
        self,
        config: EntraConfig,
        *,
        cache_seconds: float = 3600,
        refresh_cooldown_seconds: float = _MIN_REFRESH_SECONDS,
    ) -> None:
        self.config = config
        self._jwks = jwt.PyJWKClient(
            config.jwks_url,
            lifespan=cache_seconds,
            timeout=10,
            cooldown_duration=refresh_cooldown_seconds,
        )

    async def _key(self, token: str) -> Any:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise _unauthenticated("the bearer token is not a JWT") from None
        if header.get("alg") not in _ALGORITHMS:
            raise _unauthenticated(f"the bearer token is signed with {header.get('alg')!r}, not RS256")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise _unauthenticated("the bearer token names no signing key (kid)")
        try:
            signing_key = await asyncio.to_thread(self._jwks.get_signing_key, kid)
        except jwt.PyJWKClientConnectionError as exc:
            raise Problem("unavailable", f"cannot read the tenant's signing keys: {exc}") from None
        except jwt.PyJWKClientError:
            raise _unauthenticated(
                "the bearer token is signed by a key this tenant does not publish"
            ) from None
        return signing_key.key

    async def app_id(self, token: str) -> str:
        """The verified application id of the caller (``azp`` or ``appid``)."""
        key = await self._key(token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=_ALGORITHMS,
                audience=list(self.config.audiences),
                issuer=list(self.config.issuers),
                leeway=_LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise _unauthenticated("the bearer token has expired; get a new one") from None
        except jwt.InvalidAudienceError:
            raise _unauthenticated(
                "the bearer token is for another audience; request it for this API's Application ID URI"
            ) from None
        except jwt.InvalidIssuerError:
            raise _unauthenticated("the bearer token was issued by another tenant or authority") from None
        except jwt.ImmatureSignatureError:
            raise _unauthenticated("the bearer token is not valid yet (nbf)") from None
        except jwt.InvalidSignatureError:
            raise _unauthenticated("the bearer token's signature does not verify") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _unauthenticated(f"the bearer token has no {exc.claim!r} claim") from None
        except jwt.InvalidTokenError:
            raise _unauthenticated("the bearer token is not valid") from None
        app_id = claims.get("azp") or claims.get("appid")
        if not isinstance(app_id, str) or not app_id:
            raise _unauthenticated("the bearer token names no application (azp or appid)")
        return app_id


class Authenticator:
    """Turns a request's credentials into a registered :class:`Client`, or a 401/403 problem."""

    def __init__(self, registry: ClientRegistry, *, tokens: TokenVerifier | None = None) -> None:
        self.registry = registry
        self.tokens = tokens

    async def client(self, *, authorization: str | None, api_key: str | None) -> Client:
        """The client the credentials prove; exactly one credential must be sent."""
        if authorization and api_key:
            raise _unauthenticated("send either Authorization: Bearer or X-API-Key, not both")
        if api_key:
            client = self.registry.by_key(api_key.strip())
            if client is None:
                raise _unauthenticated("the API key is not registered (revoked, or mistyped)")
            return client
        if not authorization:
            raise _unauthenticated("send Authorization: Bearer <Entra access token> or X-API-Key: <key>")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthenticated("the Authorization header must be 'Bearer <token>'")
        if self.tokens is None:
            raise _unauthenticated("this API accepts no Entra tokens (no tenant configured); use X-API-Key")
        app_id = await self.tokens.app_id(token.strip())
        client = self.registry.by_app_id(app_id)
        if client is None:
            raise Problem(
                "forbidden",
                f"application {app_id} is not a registered client of this API",
                field="Authorization",
            )
        return client
