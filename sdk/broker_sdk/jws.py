"""Signed compact JWTs read with PyJWT: the published key named by `kid` decides the algorithm, the header only
has to agree with it; ECDSA signatures must be low-S; the payload must be a JSON object of finite numbers.

Used by this package's `BrokerVerifier` and by the broker itself, so that one JOSE library (PyJWT) and one set
of rules decide. PyJWT reads the protected header (refusing headers that are not JSON objects, a `kid` that is
not a string, unknown `crit` extensions) and checks the signature with its algorithm objects (refusing
signatures of the wrong length). The payload and signature segments are decoded here, with the standard
library, to the same strict rules as PyJWT's (base64url alphabet, no padding, the one canonical spelling):
PyJWT 2.15 checks each character in a Python loop, which cost more than the ES256 signature check itself
(decision 0011).
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from broker_sdk.errors import TokenRejected

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey

# Far above any token the broker issues; stops a huge token from costing base64 and JSON work.
MAX_TOKEN_LENGTH = 16 * 1024
# Headers are kept by their raw segment: a broker token has one header per key, so this is plenty, and a flood
# of distinct headers only evicts entries (costing a re-parse), never grows memory.
HEADER_CACHE_SIZE = 64
# The order of P-256. ECDSA accepts (r, s) and (r, n - s) alike; the broker signs with the low one only and
# refuses the high twin, so that a token has exactly one valid signature (no malleable copies).
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P256_HALF_ORDER = P256_ORDER // 2

_JWS = jwt.PyJWS()
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


class PublishedKey(Protocol):
    """A verification key as the broker's key ring or a JWKS cache hands it out."""

    @property
    def kid(self) -> str: ...
    @property
    def alg(self) -> str: ...
    @property
    def public_key(self) -> PublicKey: ...


@dataclass(frozen=True, slots=True)
class Header:
    """What a verifier reads from a protected header; jku, x5u, jwk and x5c are never read."""

    alg: object  # as sent: compared with the key's algorithm, never used to choose one
    kid: str | None  # None when absent or empty
    typ: str | None  # lower-cased (media types are case-insensitive); None when absent or not a string


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: an exp of infinity would never expire
        raise ValueError("number out of range")
    return value


# Integers do not pass through parse_float, so a broker token (integer times) pays nothing for it.
_PAYLOAD_JSON = json.JSONDecoder(parse_float=_finite_float, parse_constant=_reject_constant)


class HeaderReader:
    """Parses token headers with PyJWT, keeping at most HEADER_CACHE_SIZE of them by their raw segment.

    Holds only what the header's bytes say, nothing about keys: which key a kid names is asked of the key ring
    or the JWKS on every token, so a key that leaves them stops verifying at once."""

    def __init__(self, size: int = HEADER_CACHE_SIZE) -> None:
        self._size = size
        self._headers: dict[str, Header] = {}

    def header(self, token: object) -> Header:
        # Padding is refused although PyJWT takes it: the broker never sends it, and one token has one spelling.
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH or "=" in token:
            raise TokenRejected("malformed token")
        segment = token.partition(".")[0]
        found = self._headers.get(segment)
        if found is not None:
            return found
        try:
            # Only the header segment goes to PyJWT (with an empty payload and signature): verified_claims
            # decodes the others, so that a token's long segments are not walked twice.
            members = _JWS.get_unverified_header(f"{segment}..")
        except (jwt.PyJWTError, ValueError, RecursionError):
            raise TokenRejected("malformed token") from None
        if "b64" in members:  # RFC 7797 unencoded payloads: never issued by the broker
            raise TokenRejected("unsupported token header")
        kid, typ = members.get("kid"), members.get("typ")
        found = Header(alg=members.get("alg"), kid=kid or None, typ=typ.lower() if isinstance(typ, str) else None)
        if len(self._headers) >= self._size:
            # Another thread may change the dict between iter and next: then there is nothing to evict.
            with contextlib.suppress(StopIteration, RuntimeError):
                self._headers.pop(next(iter(self._headers)), None)
        self._headers[segment] = found
        return found


def check_header(header: Header, key: PublishedKey | None, types: Collection[str], wrong_type: str) -> PublishedKey:
    """The key to verify with, once the header agrees with it; TokenRejected otherwise."""
    if key is None:
        raise TokenRejected("unknown signing key" if header.kid else "token has no key id")
    if header.alg != key.alg:
        raise TokenRejected("algorithm not allowed for this key")
    if header.typ not in types:
        raise TokenRejected(wrong_type)
    return key


def low_s(signature: bytes) -> bool:
    """Whether a raw ES256 signature (r || s) has the low S of its pair."""
    return int.from_bytes(signature[32:], "big") <= P256_HALF_ORDER


def _segment(text: str) -> bytes:
    """The bytes of a base64url segment without padding, written in its one canonical spelling (the unused low
    bits of its last character zero), as PyJWT requires of the segments it decodes."""
    if len(text) % 4 == 1 or _BASE64URL.fullmatch(text) is None:
        raise TokenRejected("malformed token")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if base64.urlsafe_b64encode(raw).rstrip(b"=") != text.encode("ascii"):
        raise TokenRejected("malformed token")
    return raw


def verified_claims(token: str, key: PublishedKey) -> dict[str, Any]:
    """The payload of a token whose signature `key` verifies, with the key's algorithm and no other.

    The token's header must have been read by HeaderReader and accepted by check_header for this key."""
    signing_input, _, signature_segment = token.rpartition(".")
    header_segment, _, payload_segment = signing_input.partition(".")
    if signing_input.count(".") != 1 or _BASE64URL.fullmatch(header_segment) is None:
        raise TokenRejected("malformed token")
    payload, signature = _segment(payload_segment), _segment(signature_segment)
    try:
        algorithm = _JWS.get_algorithm_by_name(key.alg)
        valid = algorithm.verify(signing_input.encode("ascii"), algorithm.prepare_key(key.public_key), signature)
    except (jwt.PyJWTError, NotImplementedError, ValueError, TypeError):
        raise TokenRejected("malformed token") from None
    if not valid:
        raise TokenRejected("bad signature")
    if key.alg == "ES256" and not low_s(signature):
        raise TokenRejected("bad signature")  # the malleable high-S twin of a signature
    try:
        text = payload.decode("utf-8")
        claims, end = _PAYLOAD_JSON.raw_decode(text)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        raise TokenRejected("malformed token") from None
    if end != len(text) or not isinstance(claims, dict):  # a JSON object with nothing around it
        raise TokenRejected("malformed token")
    return claims


def normalize_low_s(token: str) -> str:
    """The same ES256 token with the low-S form of its signature (an ECDSA signer makes the high one half of
    the time; both verify, but the broker publishes only the low one)."""
    signing_input, _, signature_segment = token.rpartition(".")
    signature = jwt.utils.base64url_decode(signature_segment)
    s = int.from_bytes(signature[32:], "big")
    if s <= P256_HALF_ORDER:
        return token
    low = signature[:32] + (P256_ORDER - s).to_bytes(32, "big")
    return f"{signing_input}.{jwt.utils.base64url_encode(low).decode('ascii')}"
