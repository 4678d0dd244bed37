"""Public JWK representation of signing keys (RFC 7517/7518/8037), RFC 7638 thumbprints, the served JWKS."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey

# RFC 7638 §3.2: only the required members, in lexicographic order, take part in the thumbprint.
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x"), "RSA": ("e", "kty", "n")}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint(value: int, length: int | None = None) -> str:
    # RFC 7518 §6.2.1.2 / §6.3.1.1: EC coordinates are fixed-length, RSA integers are minimal big-endian.
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url(value.to_bytes(size, "big"))


def public_jwk(key: PublicKey) -> dict[str, str]:
    """The public members of a key as a JWK (no kid, alg or use)."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"unsupported curve {key.curve.name}")
        numbers = key.public_numbers()
        return {"kty": "EC", "crv": "P-256", "x": _uint(numbers.x, 32), "y": _uint(numbers.y, 32)}
    if isinstance(key, ed25519.Ed25519PublicKey):
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url(key.public_bytes(Encoding.Raw, PublicFormat.Raw))}
    if isinstance(key, rsa.RSAPublicKey):
        rsa_numbers = key.public_numbers()
        return {"kty": "RSA", "n": _uint(rsa_numbers.n), "e": _uint(rsa_numbers.e)}
    raise ValueError(f"unsupported key type {type(key).__name__}")


def thumbprint(jwk: Mapping[str, str]) -> str:
    """RFC 7638 JWK thumbprint: SHA-256 over the canonical required members, base64url without padding."""
    members = _THUMBPRINT_MEMBERS[jwk["kty"]]
    canonical = json.dumps({name: jwk[name] for name in members}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


@dataclass(frozen=True)
class JwksDocument:
    """The serialized public JWKS with its strong ETag; built once per key-set change, served as bytes."""

    body: bytes
    etag: str
    max_age: int

    @classmethod
    def build(cls, keys: Iterable[Mapping[str, str]], max_age: int) -> JwksDocument:
        body = json.dumps({"keys": list(keys)}, separators=(",", ":"), sort_keys=True).encode("utf-8")
        # The ETag depends on the body only, so every replica with the same key files serves the same one.
        etag = '"' + b64url(hashlib.sha256(body).digest()[:18]) + '"'
        return cls(body=body, etag=etag, max_age=max_age)

    @property
    def cache_control(self) -> str:
        return cache_control(self.max_age)

    def not_modified(self, if_none_match: str | None) -> bool:
        """True when an If-None-Match header value matches this document (RFC 9110 weak comparison)."""
        if not if_none_match:
            return False
        for candidate in if_none_match.split(","):
            tag = candidate.strip()
            if tag == "*":
                return True
            if tag.startswith("W/"):
                tag = tag[2:]
            if tag == self.etag:
                return True
        return False


def cache_control(max_age: int, *, stale_if_error: int | None = None) -> str:
    """The JWKS Cache-Control value: public and cacheable for max_age seconds."""
    value = f"public, max-age={max(0, int(max_age))}"
    if stale_if_error is not None:
        value += f", stale-if-error={max(0, int(stale_if_error))}"
    return value
