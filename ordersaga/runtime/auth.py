"""Who is calling: OAuth 2.0 bearer JWTs, checked with PyJWT against a JWKS.

Production points at any OIDC provider through settings (JWKS URL, issuer,
audience). Dev mode is its own issuer: `DevIssuer` keeps an ES256 signing key
in the data folder, publishes its JWKS, and mints customer and operator tokens
(`ordersaga token`). The API and the codec server verify the same way.

A token is accepted only with a valid signature from a key in the JWKS (by
`kid`), an asymmetric algorithm, and valid `exp`, `nbf`, `iss`, `aud` and
`sub`. Scopes come from `scope` (space-separated, RFC 8693 and RFC 9068) or
`scp`, each either space-separated or a list of strings, as providers send
them (Okta's `scp` is a list, Entra ID's a string); anything else in them is
ignored.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from contracts.fields import SAFE_ID_PATTERN
from ordersaga.runtime.dev_secrets import read_or_create
from ordersaga.runtime.settings import Settings, url_for_logs

log = logging.getLogger(__name__)

# Only asymmetric algorithms: with a symmetric one, anyone holding the JWKS
# could sign. "none" is never accepted.
ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")

DEV_ISSUER = "ordersaga-dev"
DEV_AUDIENCE = "ordersaga-api"
DEV_SIGNING_KEY_SECRET = "dev-issuer-signing-key.pem"
DEFAULT_TOKEN_TTL_SECONDS = 12 * 3600
MAX_TOKEN_BYTES = 8192

_SAFE_ID = re.compile(SAFE_ID_PATTERN)


class AuthError(Exception):
    """A request that may not proceed: 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message


def unauthenticated(message: str) -> AuthError:
    return AuthError(401, "UNAUTHENTICATED", message)


def forbidden(message: str) -> AuthError:
    return AuthError(403, "FORBIDDEN", message)


@dataclass(frozen=True)
class Principal:
    subject: str
    # The subject itself when it is a safe identifier; otherwise a stable hash
    # of it, so an e-mail-like subject never reaches ids or search attributes.
    customer_id: str
    scopes: frozenset[str]
    is_customer: bool
    is_operator: bool
    # The token's `exp` (Unix seconds): how long a session built on it may last.
    expires_at: float | None = None

    @property
    def safe_subject(self) -> str:
        """The subject as it may go into logs, views and histories: itself when it
        is a plain id, else its stable hash (a subject may be an e-mail address)."""
        return self.customer_id


def customer_id_for(subject: str) -> str:
    if _SAFE_ID.fullmatch(subject):
        return subject
    digest = hashlib.sha256(subject.encode("utf-8", "surrogatepass")).digest()
    return "sub_" + base64.b32encode(digest).decode("ascii").lower()[:26]


def scopes_of(claims: Mapping[str, Any]) -> frozenset[str]:
    found: set[str] = set()
    for claim in ("scope", "scp"):
        value = claims.get(claim)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list):
            found.update(item for item in value if isinstance(item, str) and item)
    return frozenset(found)


class KeySource(Protocol):
    async def key_for(self, kid: str | None) -> jwt.PyJWK: ...


class StaticKeys:
    """Keys known up front (the dev issuer's own, or a test's)."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self._keys = jwt.PyJWKSet.from_dict(dict(jwks))

    async def key_for(self, kid: str | None) -> jwt.PyJWK:
        return _pick(self._keys, kid)


class RemoteJwks:
    """A provider's JWKS over HTTP, cached; refreshed when a token names an
    unknown `kid` (key rotation), at most once per `min_refresh_seconds`, so a
    flood of forged kids cannot turn into a flood of requests to the provider.

    While the provider fails and no keys are cached, every request is refused
    with 503 AUTH_UNAVAILABLE; one fetch at a time is tried. Requests that
    queued behind a fetch that failed share its failure instead of each trying
    again in turn (behind a hung provider, the eighth would wait eight fetch
    timeouts), and for `failure_backoff_seconds` after it no request tries.
    """

    def __init__(
        self,
        url: str,
        *,
        http: httpx.AsyncClient | None = None,
        max_age_seconds: float = 600.0,
        min_refresh_seconds: float = 30.0,
        failure_backoff_seconds: float = 2.0,
        timeout_seconds: float = 5.0,
    ) -> None:
        self._url = url
        self._http = http
        self._max_age = max_age_seconds
        self._min_refresh = min_refresh_seconds
        self._failure_backoff = failure_backoff_seconds
        self._timeout = timeout_seconds
        self._keys: jwt.PyJWKSet | None = None
        self._fetched_at = float("-inf")
        self._failed_at = float("-inf")
        # Fetches finished, successful or not: a request that waited for the
        # lock sees from it whether one finished meanwhile.
        self._fetches = 0
        self._lock = asyncio.Lock()

    async def key_for(self, kid: str | None) -> jwt.PyJWK:
        keys = await self._current()
        try:
            return _pick(keys, kid)
        except AuthError:
            if time.monotonic() - self._fetched_at < self._min_refresh:
                raise
        return _pick(await self._refresh(), kid)

    async def _current(self) -> jwt.PyJWKSet:
        if self._keys is not None and time.monotonic() - self._fetched_at < self._max_age:
            return self._keys
        return await self._refresh()

    async def _refresh(self) -> jwt.PyJWKSet:
        seen = self._fetches
        if self._keys is None and time.monotonic() - self._failed_at < self._failure_backoff:
            raise _keys_unavailable()
        async with self._lock:
            if self._fetches != seen:
                # A fetch finished while this request waited: its outcome is
                # this request's too, rather than one more wait on the provider.
                if self._keys is None:
                    raise _keys_unavailable()
                return self._keys
            try:
                keys = await self._fetch()
            except (httpx.HTTPError, ValueError, jwt.PyJWKSetError) as err:
                self._fetches += 1
                self._failed_at = time.monotonic()
                # A provider outage: keep serving with the keys we have.
                if self._keys is not None:
                    log.warning(
                        "cannot fetch the JWKS from %s (%s); keeping the cached keys",
                        url_for_logs(self._url),
                        _describe_fetch_error(err, self._timeout),
                    )
                    self._fetched_at = time.monotonic()
                    return self._keys
                log.error(
                    "cannot fetch the JWKS from %s (%s); requests with a token are "
                    "refused with 503 AUTH_UNAVAILABLE until it answers",
                    url_for_logs(self._url),
                    _describe_fetch_error(err, self._timeout),
                )
                raise _keys_unavailable() from err
            self._fetches += 1
            self._keys, self._fetched_at = keys, time.monotonic()
            return keys

    async def _fetch(self) -> jwt.PyJWKSet:
        if self._http is not None:
            response = await self._http.get(self._url, timeout=self._timeout)
        else:
            async with httpx.AsyncClient(timeout=self._timeout) as http:
                response = await http.get(self._url)
        response.raise_for_status()
        document = response.json()
        if not isinstance(document, dict):
            raise ValueError("the answer is not a JWKS (a JSON object)")
        return jwt.PyJWKSet.from_dict(document)


def _keys_unavailable() -> AuthError:
    return AuthError(503, "AUTH_UNAVAILABLE", "the token issuer's keys cannot be fetched; retry")


def _describe_fetch_error(err: Exception, timeout_seconds: float) -> str:
    """One line: httpx's own text for a bad status spans lines and repeats the
    URL, and its timeouts may have no text at all."""
    if isinstance(err, httpx.HTTPStatusError):
        response = err.response
        return f"HTTP {response.status_code} {response.reason_phrase}".strip()
    if isinstance(err, httpx.ConnectTimeout):
        return f"no connection within {timeout_seconds:g} s"
    if isinstance(err, httpx.TimeoutException):
        return f"no answer within {timeout_seconds:g} s"
    if isinstance(err, json.JSONDecodeError):
        return "the answer is not JSON"
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _pick(keys: jwt.PyJWKSet, kid: str | None) -> jwt.PyJWK:
    candidates = [key for key in keys.keys if kid is None or key.key_id == kid]
    if len(candidates) != 1:
        raise unauthenticated("the token was not signed by a known key")
    return candidates[0]


class TokenVerifier:
    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str,
        customer_scope: str,
        operator_scope: str,
        leeway_seconds: int = 30,
    ) -> None:
        self._keys = keys
        self.issuer = issuer
        self.audience = audience
        self.customer_scope = customer_scope
        self.operator_scope = operator_scope
        self._leeway = leeway_seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier:
        """The provider's JWKS when one is configured; in dev mode without one,
        the dev issuer's own keys. Raises ValueError when neither applies."""
        problem = settings.auth_problem()
        if problem:
            raise ValueError(problem)
        keys: KeySource
        if settings.auth_jwks_url:
            keys = RemoteJwks(settings.auth_jwks_url)
            issuer = settings.auth_issuer or ""
            audience = settings.auth_audience or ""
        else:
            issuer_ = DevIssuer.from_settings(settings)
            keys = StaticKeys(issuer_.jwks())
            issuer, audience = issuer_.issuer, issuer_.audience
        return cls(
            keys,
            issuer=issuer,
            audience=audience,
            customer_scope=settings.auth_customer_scope,
            operator_scope=settings.auth_operator_scope,
            leeway_seconds=settings.auth_leeway_seconds,
        )

    async def verify(self, token: str) -> Principal:
        if not token:
            raise unauthenticated("a bearer token is required")
        if len(token) > MAX_TOKEN_BYTES:
            raise unauthenticated(f"the bearer token is longer than {MAX_TOKEN_BYTES} bytes")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as err:
            raise unauthenticated("the bearer token is not a JWT") from err
        algorithm = header.get("alg")
        if algorithm not in ALLOWED_ALGORITHMS:
            raise unauthenticated("the token's signing algorithm is not accepted")
        kid = header.get("kid")
        key = await self._keys.key_for(kid if isinstance(kid, str) else None)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as err:
            raise unauthenticated("the token has expired") from err
        except jwt.ImmatureSignatureError as err:
            raise unauthenticated("the token is not valid yet") from err
        except jwt.InvalidAudienceError as err:
            raise unauthenticated("the token is not meant for this API") from err
        except jwt.InvalidIssuerError as err:
            raise unauthenticated("the token is from an issuer this API does not trust") from err
        except jwt.PyJWTError as err:
            raise unauthenticated("the token is invalid") from err
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject or len(subject) > 255:
            raise unauthenticated("the token has no usable subject")
        scopes = scopes_of(claims)
        return Principal(
            subject=subject,
            customer_id=customer_id_for(subject),
            scopes=scopes,
            is_customer=self.customer_scope in scopes,
            is_operator=self.operator_scope in scopes,
            expires_at=float(claims["exp"]),
        )


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header, or AuthError 401."""
    if not authorization:
        raise unauthenticated("a bearer token is required (Authorization: Bearer <token>)")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthenticated("a bearer token is required (Authorization: Bearer <token>)")
    return token.strip()


class DevIssuer:
    """`make dev`'s own token issuer: an ES256 key kept in the data folder."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey, *, issuer: str, audience: str):
        self._private_key = private_key
        self.issuer = issuer
        self.audience = audience
        public_der = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = base64.urlsafe_b64encode(hashlib.sha256(public_der).digest()[:12]).decode()

    @classmethod
    def from_settings(cls, settings: Settings) -> DevIssuer:
        return cls.in_data_dir(
            settings.data_dir,
            issuer=settings.auth_issuer or DEV_ISSUER,
            audience=settings.auth_audience or DEV_AUDIENCE,
        )

    @classmethod
    def in_data_dir(
        cls, data_dir: Path, *, issuer: str = DEV_ISSUER, audience: str = DEV_AUDIENCE
    ) -> DevIssuer:
        pem = read_or_create(data_dir, DEV_SIGNING_KEY_SECRET, make=_new_private_key_pem())
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{DEV_SIGNING_KEY_SECRET} is not an EC private key")
        return cls(key, issuer=issuer, audience=audience)

    def jwks(self) -> dict[str, Any]:
        public = json.loads(ECAlgorithm.to_jwk(self._private_key.public_key()))
        public.update({"kid": self.kid, "use": "sig", "alg": "ES256"})
        return {"keys": [public]}

    def mint(
        self,
        subject: str,
        scopes: Iterable[str],
        *,
        ttl_seconds: int = DEFAULT_TOKEN_TTL_SECONDS,
        now: float | None = None,
        audience: str | None = None,
        issuer: str | None = None,
    ) -> str:
        issued = int(now if now is not None else time.time())
        claims = {
            "iss": issuer or self.issuer,
            "aud": audience or self.audience,
            "sub": subject,
            "scope": " ".join(scopes),
            "iat": issued,
            "nbf": issued,
            "exp": issued + ttl_seconds,
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(claims, self._private_key, algorithm="ES256", headers={"kid": self.kid})


def _new_private_key_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
