"""Broker access JWTs (RFC 9068 profile): issue with the active key, verify against published keys only."""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Collection, Mapping
from typing import TypeGuard

from broker.clock import Clock
from broker.domain import IssuedToken
from broker.errors import InvalidToken
from broker.signing.jwt_sign import sign_jwt
from broker.signing.keyring import KeyRing
from broker_sdk.claims import ACCESS_TOKEN_TYPES, ClaimRules, names_audience
from broker_sdk.claims import REQUIRED_CLAIMS as ACCESS_CLAIMS
from broker_sdk.errors import TokenRejected
from broker_sdk.jws import HeaderReader, check_header, verified_claims

ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 (a media type, not a password)
# RFC 8417 Security Event Tokens (webhooks to downstream services): a distinct typ so that neither kind of
# token can be passed off as the other.
EVENT_TOKEN_TYPE = "secevent+jwt"  # noqa: S105 (a media type, not a password)
_EVENT_TYPES = frozenset({"secevent+jwt", "application/secevent+jwt"})
# The SDK's rules, plus what the broker needs to find the session a token stands for.
REQUIRED_CLAIMS = (*ACCESS_CLAIMS, "sid", "scope")
# Claims the broker signs into every access token; extra claims may not replace them.
ISSUED_CLAIMS = (*REQUIRED_CLAIMS, "nbf")
VERIFIED_CACHE_SIZE = 10_000


def _number(value: object) -> TypeGuard[int | float]:
    return type(value) in (int, float)  # exactly: bool is an int subclass, and true is not a time


def new_jti() -> str:
    return secrets.token_urlsafe(16)


class TokenService:
    """Signs and verifies the broker's access JWTs; the clock, not the host's time, decides validity."""

    def __init__(self, keyring: KeyRing, *, issuer: str, audience: str, ttl: int, leeway: int,
                 clock: Clock, verified_cache_size: int = VERIFIED_CACHE_SIZE) -> None:
        if not 0 < ttl <= keyring.max_token_lifetime:
            # A token outliving the key ring's retention would outlive its key in the JWKS.
            raise ValueError(f"ttl {ttl} must be between 1 and the key ring's max_token_lifetime")
        self._keyring = keyring
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl
        self._leeway = leeway
        self._clock = clock
        self._rules = ClaimRules(issuer, leeway, REQUIRED_CLAIMS)
        self._headers = HeaderReader()
        # Access tokens whose signature this process has checked: a gateway sees the same token many times in
        # its few minutes of life. Each use still checks the claims (expiry, audience) and the key.
        self._verified: OrderedDict[str, tuple[str, dict[str, object]]] = OrderedDict()
        self._verified_size = verified_cache_size

    def __repr__(self) -> str:
        return f"TokenService(issuer={self._issuer!r}, audience={self._audience!r}, ttl={self._ttl})"

    def issue(self, *, sub: str, sid: str, scope: str, extra: Mapping[str, object] | None = None,
              audience: str | None = None, ttl: int | None = None, now: float | None = None,
              jti: str | None = None) -> IssuedToken:
        """Sign an access token with the active key; extra claims (tiktok_open_id, name...) may not
        replace registered ones. Given the same `now` and `jti` (and the same key) it signs the very same token
        again: the signatures are deterministic (see jwt_sign)."""
        lifetime = self._ttl if ttl is None else ttl
        if not 0 < lifetime <= self._keyring.max_token_lifetime:
            raise ValueError(f"ttl {lifetime} must be between 1 and the key ring's max_token_lifetime")
        if extra:
            clash = sorted(set(extra) & set(ISSUED_CLAIMS))
            if clash:
                raise ValueError(f"extra claims may not replace {', '.join(clash)}")
        key = self._keyring.signing_key()
        issued_at = int(self._clock.now() if now is None else now)
        claims: dict[str, object] = dict(extra or {})
        claims.update({
            "iss": self._issuer, "sub": sub, "aud": audience or self._audience, "exp": issued_at + lifetime,
            "iat": issued_at, "nbf": issued_at, "jti": jti or new_jti(), "sid": sid, "scope": scope,
        })
        token = sign_jwt(claims, key, ACCESS_TOKEN_TYPE)
        return IssuedToken(token=token, claims=claims, expires_at=float(issued_at + lifetime))

    def verify(self, token: str, *, audience: str | Collection[str] | None = None) -> dict[str, object]:
        """The claims of a valid access token; InvalidToken (with a short reason) for anything else.

        `audience`: the one expected (default: the service's), or several of which the token must name one."""
        verified = self._verified.get(token)
        # A token seen before skips the signature, not the key: its key must still be one we verify with.
        if verified is not None and self._keyring.verification_key(verified[0]) is not None:
            self._verified.move_to_end(token)
            claims = verified[1]
            self._check_claims(claims, audience or self._audience)
            return dict(claims)
        claims, kid = self._signed_claims(token, ACCESS_TOKEN_TYPES, "not an access token")
        self._check_claims(claims, audience or self._audience)
        if self._verified_size:
            self._verified[token] = (kid, dict(claims))
            if len(self._verified) > self._verified_size:
                self._verified.popitem(last=False)
        return claims

    def _signed_claims(self, token: str, types: Collection[str], wrong_type: str) -> tuple[dict[str, object], str]:
        """The payload of a token signed by one of our published keys, with a `typ` among `types`, and the key's
        id; InvalidToken (with a short reason) otherwise.

        The key comes from our own key ring, by kid only (jku, x5u, jwk and x5c are never read), and decides
        the algorithm: the header only has to agree with it. The key is asked of the key ring on every call
        (only the header's parse is cached), so a key leaving the JWKS stops verifying at once."""
        try:
            header = self._headers.header(token)
            key = check_header(header, self._keyring.verification_key(header.kid) if header.kid else None,
                               types, wrong_type)
            return verified_claims(token, key), key.kid
        except TokenRejected as rejected:
            raise InvalidToken(rejected.reason) from None

    def _check_claims(self, claims: dict[str, object], audience: str | Collection[str]) -> None:
        try:
            self._rules.check(claims, audience, self._clock.now())
        except TokenRejected as rejected:
            raise InvalidToken(rejected.reason) from None

    def sign_event(self, *, audience: str, sub: str, sid: str | None, event_type: str,
                   data: Mapping[str, object], jti: str, iat: float, toe: float | None = None) -> str:
        """An RFC 8417 Security Event Token for one receiver, signed with the active key.

        Shaped like an OpenID back-channel logout token: no exp, no nonce, no scope; a receiver checks the
        signature against the JWKS (by kid, algorithm pinned by the key), typ secevent+jwt, iss, aud and iat,
        and drops duplicates by jti (the same for every retry of one event). `iat` is when this copy was
        signed, `toe` (RFC 8417) when the event happened.
        """
        if not event_type or "/" in event_type or not sub or not jti:
            raise ValueError("sign_event needs an event type name, a sub and a jti")
        key = self._keyring.signing_key()
        claims: dict[str, object] = {
            "iss": self._issuer, "aud": audience, "iat": int(iat), "jti": jti, "sub": sub,
            "events": {f"{self._issuer}/events/{event_type}": dict(data)},
        }
        if sid:
            claims["sid"] = sid
        if toe is not None:
            claims["toe"] = int(toe)
        return sign_jwt(claims, key, EVENT_TOKEN_TYPE)

    def verify_event(self, token: str, *, audience: str) -> dict[str, object]:
        """The claims of a valid Security Event Token from this broker (what a receiver checks); InvalidToken
        for anything else, access tokens included."""
        claims, _ = self._signed_claims(token, _EVENT_TYPES, "not a security event token")
        events, aud, iat = claims.get("events"), claims.get("aud"), claims.get("iat")
        # A nonce would let an ID token pass for an event (the back-channel logout rule).
        if "nonce" in claims or not isinstance(events, dict) or not events:
            raise InvalidToken("token has no events claim")
        if claims.get("iss") != self._issuer:
            raise InvalidToken("wrong issuer")
        if not names_audience(aud, audience):
            raise InvalidToken("wrong audience")
        if not _number(iat) or iat > self._clock.now() + self._leeway:
            raise InvalidToken("token has a missing or future iat claim")
        if not isinstance(claims.get("jti"), str) or not claims["jti"]:
            raise InvalidToken("token has no jti claim")
        return claims
