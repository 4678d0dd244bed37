"""Turning a JWKS document into verification keys, and a response's Cache-Control into a freshness lifetime."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

log = logging.getLogger(__name__)

SUPPORTED_ALGORITHMS = frozenset({"ES256", "EdDSA", "RS256"})
MIN_RSA_BITS = 2048
# Members only a private or symmetric key has: a JWKS carrying them is broken, and such a key is never used.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# The key type (and curve) each algorithm needs, so a key can be used with its declared algorithm only.
_SHAPES = {"ES256": ("EC", "P-256"), "EdDSA": ("OKP", "Ed25519"), "RS256": ("RSA", None)}


@dataclass(frozen=True)
class VerificationKey:
    """One published signing key: its kid, the one algorithm it may verify, and the public key itself."""

    kid: str
    alg: str
    public_key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey


def _parse_key(jwk: Mapping[str, Any], algorithms: frozenset[str]) -> VerificationKey | None:
    """The key, or None (with a debug log) for anything not usable to verify the allowed algorithms."""
    kid, alg, use = jwk.get("kid"), jwk.get("alg"), jwk.get("use")
    if not isinstance(kid, str) or not kid or len(kid) > 256:
        return None
    if use not in (None, "sig") or not isinstance(alg, str) or alg not in algorithms:
        log.debug("JWKS key %s skipped: use %r, alg %r", kid, use, alg)
        return None
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return None
    kty, crv = _SHAPES[alg]
    if jwk.get("kty") != kty or (crv is not None and jwk.get("crv") != crv) or _PRIVATE_MEMBERS & set(jwk):
        log.debug("JWKS key %s skipped: its members do not fit %s", kid, alg)
        return None
    try:
        public_key = jwt.PyJWK(dict(jwk), algorithm=alg).key
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        log.debug("JWKS key %s skipped: malformed", kid)
        return None
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < MIN_RSA_BITS:
        return None
    if not isinstance(public_key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey):
        return None
    return VerificationKey(kid=kid, alg=alg, public_key=public_key)


def parse_jwks(document: object, algorithms: frozenset[str]) -> dict[str, VerificationKey]:
    """The usable keys of a JWKS by kid; ValueError when the document is not a JWKS at all.

    Keys for other uses or algorithms, malformed keys and kids that appear twice are left out.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document")
    keys: dict[str, VerificationKey] = {}
    duplicated: set[str] = set()
    for jwk in document["keys"]:
        key = _parse_key(jwk, algorithms) if isinstance(jwk, dict) else None
        if key is None:
            continue
        if key.kid in keys:
            duplicated.add(key.kid)
        keys[key.kid] = key
    for kid in duplicated:  # ambiguous: which one did the broker mean?
        del keys[kid]
    return keys


def _seconds(value: str) -> int | None:
    value = value.strip().strip('"')
    return int(value) if value.isdigit() else None


def freshness_lifetime(headers: Mapping[str, str], *, default: float, maximum: float) -> float:
    """How long a response stays fresh (RFC 9111): max-age minus Age; no-cache/no-store mean zero; no
    max-age means `default`; never more than `maximum`."""
    lifetime: float | None = None
    for directive in headers.get("cache-control", "").split(","):
        name, _, value = directive.strip().partition("=")
        name = name.strip().lower()
        if name in ("no-cache", "no-store"):
            return 0.0
        if name == "max-age":
            parsed = _seconds(value)
            lifetime = float(parsed) if parsed is not None else None
    if lifetime is None:
        lifetime = default
    age = _seconds(headers.get("age", "")) or 0
    return max(0.0, min(lifetime, maximum) - age)
