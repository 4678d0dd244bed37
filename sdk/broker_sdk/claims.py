"""The claim rules of a broker access token (RFC 9068 profile), one set for downstream services and the broker."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from broker_sdk.errors import TokenRejected

ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
# What every access token names; a verifier may require more (the broker needs sid and scope to find a session).
REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "jti")
# Required claims that must be non-empty strings.
_IDENTIFIERS = frozenset({"sub", "jti", "sid"})
# JSON's numbers: exactly int or float (bool is an int subclass, and true is not a time).
_NUMBERS = (int, float)


def names_audience(aud: object, accepted: str | Collection[str]) -> bool:
    """Whether an aud claim names an accepted audience. It must be a string or a list of strings only (RFC 7519
    4.1.3): a list holding anything else names none."""
    if isinstance(aud, str):
        return aud == accepted if isinstance(accepted, str) else aud in accepted
    if not isinstance(aud, list) or not all(isinstance(candidate, str) for candidate in aud):
        return False
    return accepted in aud if isinstance(accepted, str) else any(candidate in accepted for candidate in aud)


def _time(claims: dict[str, Any], name: str) -> float:
    value = claims[name]
    if type(value) not in _NUMBERS:
        raise TokenRejected(f"token has a malformed {name} claim")
    return float(value)


@dataclass(frozen=True)
class ClaimRules:
    """Who must have issued a token, how much clock skew to allow, and which claims it must carry."""

    issuer: str
    leeway: float
    required: tuple[str, ...] = REQUIRED_CLAIMS
    _required: frozenset[str] = field(init=False, repr=False, compare=False)
    _identifiers: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not set(REQUIRED_CLAIMS) <= set(self.required):
            raise ValueError(f"required claims must include {', '.join(REQUIRED_CLAIMS)}")
        if self.leeway < 0:
            raise ValueError("leeway must not be negative")
        # Worked out once: check() runs on every use of a token, a cached one included.
        object.__setattr__(self, "_required", frozenset(self.required))
        object.__setattr__(self, "_identifiers", tuple(name for name in self.required if name in _IDENTIFIERS))

    def check(self, claims: dict[str, Any], audience: str | Collection[str], now: float) -> float:
        """Raises TokenRejected (a short reason) unless the claims fit at `now`; returns exp.

        Required string claims other than iss and aud must be non-empty strings, `scope` a string; exp and iat
        are checked with the leeway, and nbf too when present, after the issuer and the audience."""
        if not claims.keys() >= self._required:
            missing = next(name for name in self.required if name not in claims)
            raise TokenRejected(f"token has no {missing} claim")
        for name in self._identifiers:
            value = claims[name]
            if not (isinstance(value, str) and value):
                raise TokenRejected(f"token has a malformed {name} claim")
        if "scope" in claims and not isinstance(claims["scope"], str):
            raise TokenRejected("token has a malformed scope claim")
        if claims["iss"] != self.issuer:
            raise TokenRejected("wrong issuer")
        if not names_audience(claims["aud"], audience):
            raise TokenRejected("wrong audience")
        exp, iat = _time(claims, "exp"), _time(claims, "iat")
        if now >= exp + self.leeway:
            raise TokenRejected("token expired")
        if "nbf" in claims and _time(claims, "nbf") > now + self.leeway:
            raise TokenRejected("token not yet valid")
        if iat > now + self.leeway:
            raise TokenRejected("token issued in the future")
        return exp
