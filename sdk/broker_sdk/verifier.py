"""BrokerVerifier: checks a broker access JWT (RFC 9068 profile) offline against the JWKS, optionally online."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from broker_sdk.compact import (
    HeaderCache,
    MalformedToken,
    SignatureChecks,
    b64url_decode,
    signed_json_object,
    split,
)
from broker_sdk.errors import TokenRejected
from broker_sdk.introspection import Introspection
from broker_sdk.jwks import JwksCache
from broker_sdk.keys import SUPPORTED_ALGORITHMS

Claims = dict[str, object]

ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "jti")
_REQUIRED = frozenset(REQUIRED_CLAIMS)
MAX_TOKEN_LENGTH = 16 * 1024
# JSON's numbers: exactly int or float (bool is an int subclass, and true is not a time).
_NUMBERS = (int, float)


def _time_claim(claims: Claims, name: str) -> float:
    value: Any = claims.get(name)  # Any: checked to be an int or a float on the next line
    if type(value) not in _NUMBERS:
        raise TokenRejected(f"token has a malformed {name} claim")
    return value  # type: ignore[no-any-return]


class BrokerVerifier:
    """Verifies the broker's access tokens for one audience.

    The key comes from the JWKS by kid only (jku, x5u, jwk and x5c are never read) and decides the
    algorithm: the header's alg must equal the key's, and only `algorithms` (asymmetric, never none or HMAC)
    are accepted. Then typ at+jwt, iss, aud, exp, nbf and iat (with `leeway` seconds), and, when
    `introspection` is given, that the broker still calls the token active. `now` is the wall clock.
    Raises TokenRejected (reason safe to show) or VerifierUnavailable (answer 503, not 401).
    """

    def __init__(self, issuer: str, audience: str, *, jwks: JwksCache | None = None,
                 algorithms: Iterable[str] = ("ES256", "EdDSA", "RS256"), leeway: float = 10,
                 introspection: Introspection | None = None, now: Callable[[], float] = time.time) -> None:
        allowed = frozenset(algorithms)
        if not allowed or not allowed <= SUPPORTED_ALGORITHMS:
            raise ValueError(f"algorithms must be some of {', '.join(sorted(SUPPORTED_ALGORITHMS))}")
        if leeway < 0:
            raise ValueError("leeway must not be negative")
        self.issuer = issuer
        self.audience = audience
        self.algorithms = allowed
        self.jwks = jwks if jwks is not None else JwksCache(issuer.rstrip("/") + "/.well-known/jwks.json",
                                                             algorithms=allowed)
        self.introspection = introspection
        self._leeway = leeway
        self._now = now
        self._headers = HeaderCache()
        self._checks = SignatureChecks()

    def __repr__(self) -> str:
        return f"BrokerVerifier(issuer={self.issuer!r}, audience={self.audience!r})"

    async def verify(self, token: str) -> Claims:
        """The claims of a valid access token; TokenRejected for anything else.

        Only the header's parse is cached (by its bytes); the key is asked of the JWKS cache every time, and
        the signature is checked before the payload is decoded."""
        try:
            signing_input, header_segment, payload_segment, signature_segment = split(
                token, max_length=MAX_TOKEN_LENGTH)
            header = self._headers.header(header_segment)
        except MalformedToken:
            raise TokenRejected("malformed token") from None
        if header.extended:
            raise TokenRejected("unsupported token header")
        alg = header.alg
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise TokenRejected("algorithm not allowed")
        if header.typ not in ACCESS_TOKEN_TYPES:
            raise TokenRejected("not an access token")
        if header.kid is None:
            raise TokenRejected("token has no key id")
        key = await self.jwks.get_key(header.kid)
        if key is None:
            raise TokenRejected("unknown signing key")
        if key.alg != alg or key.alg not in self.algorithms:
            raise TokenRejected("algorithm not allowed for this key")
        try:
            signature = b64url_decode(signature_segment)
        except MalformedToken:
            raise TokenRejected("malformed token") from None
        if not self._checks.check_for(key)(signing_input, signature):
            raise TokenRejected("bad signature")
        try:
            claims: Claims = signed_json_object(payload_segment)
        except MalformedToken:
            raise TokenRejected("malformed token") from None
        expires = self._check_claims(claims)
        if self.introspection is not None:
            remaining = expires + self._leeway - self._now()
            if not await self.introspection.is_active(token, lifetime=remaining):
                raise TokenRejected("token is not active")
        return claims

    def _check_claims(self, claims: Claims) -> float:
        """Raises TokenRejected unless the claims fit; returns exp."""
        if not claims.keys() >= _REQUIRED:  # one set comparison; the loop only names what is missing
            missing = next(name for name in REQUIRED_CLAIMS if name not in claims)
            raise TokenRejected(f"token has no {missing} claim")
        sub, jti = claims["sub"], claims["jti"]
        if not (isinstance(sub, str) and sub and isinstance(jti, str) and jti):
            bad = "sub" if not (isinstance(sub, str) and sub) else "jti"
            raise TokenRejected(f"token has a malformed {bad} claim")
        if claims["iss"] != self.issuer:
            raise TokenRejected("wrong issuer")
        aud = claims["aud"]
        # A string or a list of strings only (RFC 7519 4.1.3); a list with anything else names no audience.
        if not (aud == self.audience if isinstance(aud, str) else isinstance(aud, list) and self.audience in aud
                and all(isinstance(name, str) for name in aud)):
            raise TokenRejected("wrong audience")
        exp, iat = _time_claim(claims, "exp"), _time_claim(claims, "iat")
        nbf = _time_claim(claims, "nbf") if "nbf" in claims else None
        now = self._now()
        if now >= exp + self._leeway:
            raise TokenRejected("token expired")
        if nbf is not None and nbf > now + self._leeway:
            raise TokenRejected("token not yet valid")
        if iat > now + self._leeway:
            raise TokenRejected("token issued in the future")
        return exp

    async def aclose(self) -> None:
        """Close the HTTP clients the cache and the introspection made for themselves."""
        await self.jwks.aclose()
        if self.introspection is not None:
            await self.introspection.aclose()
