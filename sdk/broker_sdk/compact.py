"""Compact JWS, strictly: split once, base64url without padding, each distinct header parsed once, raw signatures.

The building blocks both of the broker's verifiers use (this library's `BrokerVerifier` and the broker's own
`TokenService`), so that one decoder is audited. Every function here raises MalformedToken for input that is
not a well-formed compact JWS; whether a signature is good is a yes/no answer of a `SignatureCheck`.

Strictness, beyond what a lenient decoder would accept (RFC 7515 section 2 and appendix C):
- segments use the base64url alphabet only: no padding, no whitespace, no `+` or `/`;
- the unused low bits of a segment's last character are zero (one encoding per byte string, so a token
  cannot be altered without changing what it decodes to);
- the header and the payload are UTF-8 JSON objects without NaN, Infinity or numbers too large for a float,
  with nothing around them; the header, which anyone can write, also without repeated member names (parsers
  disagree on which value wins). The payload is read only once its signature holds, so only our own signer
  could have repeated a member, and it cannot: that check would cost every token time for nothing;
- signatures have the exact length of their algorithm (ES256 is raw r||s, 64 bytes, never DER).
"""

from __future__ import annotations

import binascii
import contextlib
import json
import math
from binascii import a2b_base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey
# (signing input, raw signature) -> whether the signature is good.
SignatureCheck = Callable[[bytes, bytes], bool]

# base64url's two own characters become the standard alphabet's; the standard alphabet's own two and padding
# become "!", which the strict standard decoder refuses like every other foreign byte.
_TO_STANDARD_ALPHABET = bytes.maketrans(b"-_+/=", b"+/!!!")
# By length modulo 4. A segment of length 4n+2 (4n+3) ends in a character carrying 4 (2) bits past the
# data; canonical encoders leave them zero, so only these characters may end it. Length 4n+1 never encodes
# whole bytes: no character may end it.
_CANONICAL_LAST: tuple[frozenset[int], ...] = (frozenset(), frozenset(), frozenset(b"AQgw"),
                                               frozenset(b"AEIMQUYcgkosw048"))
_PADDING = (b"", b"", b"==", b"=")
# Headers are cached by their raw bytes; a token of ours has one header per key, so this is plenty, and a
# flood of distinct headers only evicts entries (costing a re-parse), never grows memory.
HEADER_CACHE_SIZE = 64


class MalformedToken(ValueError):
    """Not a well-formed compact JWS (the reason is for logs and tests, not for callers to branch on)."""


@dataclass(frozen=True, slots=True)
class JoseHeader:
    """What a verifier reads from a protected header; every other member is ignored (jku, x5u, jwk, x5c...)."""

    alg: object  # as sent: compared with the key's algorithm, never used to choose one
    kid: str | None  # None when absent, empty or not a string
    typ: str | None  # lower-cased (media types are case-insensitive); None when absent or not a string
    extended: bool  # crit or b64 present: extensions (RFC 7515 4.1.11, RFC 7797) this verifier does not do


class PublishedKey(Protocol):
    """A verification key as the key ring or the JWKS cache hands it out."""

    @property
    def kid(self) -> str: ...
    @property
    def alg(self) -> str: ...
    @property
    def public_key(self) -> PublicKey: ...


def split(token: object, *, max_length: int) -> tuple[bytes, bytes, bytes, bytes]:
    """(signing input, header, payload, signature) of a compact JWS of at most max_length ASCII characters;
    the signing input is header.payload, the bytes the signature covers. Each segment is checked for the
    base64url alphabet when it is decoded."""
    if not isinstance(token, str) or not token or len(token) > max_length:
        raise MalformedToken("not a token string of an acceptable length")
    try:
        data = token.encode("ascii")
    except UnicodeEncodeError:
        raise MalformedToken("characters outside base64url") from None
    signing_input, _, signature = data.rpartition(b".")
    header, dot, payload = signing_input.partition(b".")
    if not dot or b"." in payload:
        raise MalformedToken("not three segments")
    return signing_input, header, payload, signature


def b64url_decode(segment: bytes) -> bytes:
    """Strict base64url: the alphabet only (no padding, no whitespace), canonical final character."""
    remainder = len(segment) % 4
    if remainder and segment[-1] not in _CANONICAL_LAST[remainder]:
        raise MalformedToken("not canonical base64url")
    try:
        return a2b_base64(segment.translate(_TO_STANDARD_ALPHABET) + _PADDING[remainder], strict_mode=True)
    except binascii.Error:
        raise MalformedToken("characters outside base64url") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        # Parsers disagree on which of two values wins; a token that depends on it is refused.
        raise ValueError("repeated member name")
    return members


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: an exp of infinity would never expire
        raise ValueError("number out of range")
    return value


# Integers do not pass through parse_float, so a token of ours (integer times) pays nothing for it.
_SIGNED_JSON = json.JSONDecoder(parse_float=_finite_float, parse_constant=_reject_constant)
_UNSIGNED_JSON = json.JSONDecoder(object_pairs_hook=_unique_members, parse_float=_finite_float,
                                  parse_constant=_reject_constant)


def _json_object(segment: bytes, decoder: json.JSONDecoder) -> dict[str, Any]:
    try:
        text = b64url_decode(segment).decode("utf-8")
        value, end = decoder.raw_decode(text)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        raise MalformedToken("not a JSON object") from None
    if end != len(text) or not isinstance(value, dict):  # nothing around it, not even whitespace
        raise MalformedToken("not a JSON object")
    return value


def json_object(segment: bytes) -> dict[str, Any]:
    """The JSON object of a segment nobody has vouched for yet (a header): strict base64url, UTF-8, no
    repeated members, no NaN, Infinity or out-of-range numbers, nothing before or after it."""
    return _json_object(segment, _UNSIGNED_JSON)


def signed_json_object(segment: bytes) -> dict[str, Any]:
    """The JSON object of a segment whose signature has been checked (the payload): as json_object, but
    repeated members are not looked for (see the module's docstring)."""
    return _json_object(segment, _SIGNED_JSON)


def parse_header(segment: bytes) -> JoseHeader:
    members = json_object(segment)
    kid, typ = members.get("kid"), members.get("typ")
    return JoseHeader(alg=members.get("alg"), kid=kid if isinstance(kid, str) and kid else None,
                      typ=typ.lower() if isinstance(typ, str) else None,
                      extended="crit" in members or "b64" in members)


class HeaderCache:
    """Parsed headers by their raw segment, at most HEADER_CACHE_SIZE (oldest evicted first).

    Holds only what the header's bytes say, nothing about keys: which key a kid names is asked of the key
    ring or JWKS on every token, so a key that leaves them stops verifying at once."""

    def __init__(self, size: int = HEADER_CACHE_SIZE) -> None:
        self._size = size
        self._headers: dict[bytes, JoseHeader] = {}

    def header(self, segment: bytes) -> JoseHeader:
        found = self._headers.get(segment)
        if found is None:
            found = parse_header(segment)  # a header that does not parse is never cached
            if len(self._headers) >= self._size:
                # Another thread may change the dict between iter and next: then there is nothing to evict.
                with contextlib.suppress(StopIteration, RuntimeError):
                    self._headers.pop(next(iter(self._headers)), None)
            self._headers[segment] = found
        return found


def signature_check(alg: str, public_key: PublicKey) -> SignatureCheck:
    """The signature check of `alg` with this key; ValueError if the key does not fit the algorithm."""
    if alg == "ES256" and isinstance(public_key, ec.EllipticCurvePublicKey) \
            and isinstance(public_key.curve, ec.SECP256R1):
        return _es256(public_key)
    if alg == "EdDSA" and isinstance(public_key, ed25519.Ed25519PublicKey):
        return _eddsa(public_key)
    if alg == "RS256" and isinstance(public_key, rsa.RSAPublicKey):
        return _rs256(public_key)
    raise ValueError(f"a {type(public_key).__name__} cannot verify {alg}")


def _der_integer(value: bytes) -> bytes:
    """The content of a DER INTEGER holding this big-endian unsigned number: minimal, positive."""
    value = value.lstrip(b"\0")
    return b"\0" + value if not value or value[0] & 0x80 else value


def raw_to_der(signature: bytes) -> bytes:
    """A 64-byte ES256 signature (r || s) as the DER SEQUENCE of two INTEGERs that OpenSSL verifies.

    What cryptography's encode_dss_signature makes from the two numbers (the tests hold it to that), built
    from the bytes directly because it runs on every token and costs a third as much. Lengths stay under 128,
    so every length is one byte."""
    r, s = _der_integer(signature[:32]), _der_integer(signature[32:])
    return b"\x30%c\x02%c%b\x02%c%b" % (len(r) + len(s) + 4, len(r), r, len(s), s)


def _es256(public_key: ec.EllipticCurvePublicKey) -> SignatureCheck:
    algorithm = ec.ECDSA(hashes.SHA256())

    def check(signing_input: bytes, signature: bytes) -> bool:
        if len(signature) != 64:  # JWS uses raw r||s, each 32 bytes; DER or truncated forms are refused
            return False
        der = raw_to_der(signature)
        try:
            public_key.verify(der, signing_input, algorithm)
        except InvalidSignature:
            return False
        return True

    return check


def _eddsa(public_key: ed25519.Ed25519PublicKey) -> SignatureCheck:
    def check(signing_input: bytes, signature: bytes) -> bool:
        if len(signature) != 64:
            return False
        try:
            public_key.verify(signature, signing_input)
        except InvalidSignature:
            return False
        return True

    return check


def _rs256(public_key: rsa.RSAPublicKey) -> SignatureCheck:
    size = (public_key.key_size + 7) // 8
    pad, digest = padding.PKCS1v15(), hashes.SHA256()

    def check(signing_input: bytes, signature: bytes) -> bool:
        if len(signature) != size:  # RFC 8017 8.2.2: exactly the modulus length
            return False
        try:
            public_key.verify(signature, signing_input, pad, digest)
        except InvalidSignature:
            return False
        return True

    return check


class SignatureChecks:
    """One SignatureCheck per key, rebuilt when the key ring or JWKS hands out a different key object for a
    kid; at most `size` kids are kept."""

    def __init__(self, size: int = 16) -> None:
        self._size = size
        self._checks: dict[str, tuple[PublishedKey, SignatureCheck]] = {}

    def check_for(self, key: PublishedKey) -> SignatureCheck:
        entry = self._checks.get(key.kid)
        if entry is not None and entry[0] is key:
            return entry[1]
        check = signature_check(key.alg, key.public_key)
        if len(self._checks) >= self._size:
            self._checks.clear()
        self._checks[key.kid] = (key, check)
        return check
