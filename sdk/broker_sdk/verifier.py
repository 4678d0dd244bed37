"""BrokerVerifier: checks a broker access JWT (RFC 9068 profile) offline against the JWKS, optionally online."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from broker_sdk.claims import ACCESS_TOKEN_TYPES, ClaimRules
from broker_sdk.errors import TokenRejected
from broker_sdk.introspection import Introspection
from broker_sdk.jwks import JwksCache
from broker_sdk.jws import HeaderReader, check_header, verified_claims
from broker_sdk.keys import SUPPORTED_ALGORITHMS

Claims = dict[str, object]
# Signatures checked by this process: a service sees the same token many times in its few minutes of life.
# Each use still checks the claims (expiry, audience) and that the key is still published.
VERIFIED_CACHE_SIZE = 10_000


class BrokerVerifier:
    """Verifies the broker's access tokens for one audience.

    The key comes from the JWKS by kid only (jku, x5u, jwk and x5c are never read) and decides the
    algorithm: the header's alg must equal the key's, and only `algorithms` (asymmetric, never none or HMAC)
    are accepted. Then typ at+jwt, iss, aud, exp, nbf and iat (with `leeway` seconds), and, when
    `introspection` is given, that the broker still calls the token active. `now` is the wall clock.
    The signatures of up to `verified_cache_size` tokens are remembered (0: none): a repeat of a token checks
    its claims and that its key is still published, not its signature.
    Raises TokenRejected (reason safe to show) or VerifierUnavailable (answer 503, not 401).
    """

    def __init__(self, issuer: str, audience: str, *, jwks: JwksCache | None = None,
                 algorithms: Iterable[str] = ("ES256", "EdDSA", "RS256"), leeway: float = 10,
                 introspection: Introspection | None = None, now: Callable[[], float] = time.time,
                 verified_cache_size: int = VERIFIED_CACHE_SIZE) -> None:
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
        self._now = now
        self._rules = ClaimRules(issuer, leeway)
        self._headers = HeaderReader()
        self._verified: OrderedDict[str, tuple[str, Claims]] = OrderedDict()
        self._verified_size = verified_cache_size

    def __repr__(self) -> str:
        return f"BrokerVerifier(issuer={self.issuer!r}, audience={self.audience!r})"

    async def verify(self, token: str) -> Claims:
        """The claims of a valid access token; TokenRejected for anything else.

        A token seen before skips the signature, not the key: its key must still be in the JWKS. The key is
        asked of the JWKS cache on every call, and decides the algorithm (the header only has to agree)."""
        verified = self._verified.get(token)
        if verified is not None and await self.jwks.get_key(verified[0]) is not None:
            self._verified.move_to_end(token)
            claims = dict(verified[1])
        else:
            header = self._headers.header(token)
            if not isinstance(header.alg, str) or header.alg not in self.algorithms:
                raise TokenRejected("algorithm not allowed")
            key = check_header(header, await self.jwks.get_key(header.kid) if header.kid else None,
                               ACCESS_TOKEN_TYPES, "not an access token")
            claims = verified_claims(token, key)
            self._remember(token, key.kid, claims)
        expires = self._rules.check(claims, self.audience, self._now())
        if self.introspection is not None:
            remaining = expires + self._rules.leeway - self._now()
            if not await self.introspection.is_active(token, lifetime=remaining):
                raise TokenRejected("token is not active")
        return claims

    def _remember(self, token: str, kid: str, claims: Claims) -> None:
        if not self._verified_size:
            return
        self._verified[token] = (kid, dict(claims))
        if len(self._verified) > self._verified_size:
            self._verified.popitem(last=False)

    async def aclose(self) -> None:
        """Close the HTTP clients the cache and the introspection made for themselves."""
        await self.jwks.aclose()
        if self.introspection is not None:
            await self.introspection.aclose()
