"""The strict compact-JWS decoder both verifiers share: every leniency of a stock decoder is refused."""

from __future__ import annotations

import base64
import json
import random
import string
from dataclasses import dataclass

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from broker_sdk import compact
from broker_sdk.compact import MalformedToken, PublicKey
from tests.sdk.jws_strategies import MUTATION_CHARACTERS

ALPHABET = string.ascii_letters + string.digits + "-_"
# The order of the P-256 group: s and n - s are both valid for the same message (ECDSA malleability).
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: object) -> bytes:
    return b64(json.dumps(value).encode()).encode()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# --- splitting ---------------------------------------------------------------------------------------------


def test_split_gives_the_signed_bytes_and_the_segments() -> None:
    signing_input, header, payload, signature = compact.split("aGVhZGVy.cGF5bG9hZA.c2ln", max_length=100)
    assert (header, payload, signature) == (b"aGVhZGVy", b"cGF5bG9hZA", b"c2ln")
    assert signing_input == header + b"." + payload


@pytest.mark.parametrize("token", [None, b"a.b.c", 7, "", "a.b", "abc", "a.b.c.d", "a..b.c", "a.b.c."])
def test_split_refuses_non_strings_and_wrong_segment_counts(token: object) -> None:
    with pytest.raises(MalformedToken):
        compact.split(token, max_length=100)


def test_split_refuses_tokens_over_the_length_limit_before_looking_at_them() -> None:
    assert compact.split("a.b." + "c" * 96, max_length=100)
    with pytest.raises(MalformedToken, match="length"):
        compact.split("a.b." + "c" * 97, max_length=100)


@pytest.mark.parametrize("foreign", ["=", "==", "+", "/", " ", "\n", "\t", "\x00", "%3D", "é", "\u2024", "\ufeff"])
@pytest.mark.parametrize("where", [0, 1, 2])
def test_any_character_outside_base64url_in_any_segment_is_refused(foreign: str, where: int) -> None:
    segments = ["eyJhIjoxfQ", "eyJiIjoyfQ", "c2lnbmF0dXJl"]
    segments[where] += foreign
    with pytest.raises(MalformedToken, match="base64url"):
        for part in compact.split(".".join(segments), max_length=1000)[1:]:
            compact.b64url_decode(part)


# --- base64url ------------------------------------------------------------------------------------------


def test_decode_round_trips_every_length() -> None:
    rng = random.Random(7)
    for length in range(70):
        data = rng.randbytes(length)
        assert compact.b64url_decode(b64(data).encode()) == data


@pytest.mark.parametrize("length", [2, 3])
def test_only_canonical_final_characters_are_accepted(length: int) -> None:
    """A segment of length 4n+2 or 4n+3 has spare low bits in its last character; a lenient decoder ignores
    them, so one payload would have several encodings. Every final character is tried."""
    for last in ALPHABET:
        text = "Q" * (length - 1) + last
        lenient = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        canonical = b64(lenient) == text
        if canonical:
            assert compact.b64url_decode(text.encode()) == lenient
        else:
            with pytest.raises(MalformedToken, match="canonical"):
                compact.b64url_decode(text.encode())
    assert base64.urlsafe_b64decode("QR==") == base64.urlsafe_b64decode("QQ==")  # what strictness prevents


def test_a_length_of_4n_plus_1_never_decodes() -> None:
    for text in ("Q", "QUJDR", "QUJDRAAAA"):
        assert len(text) % 4 == 1
        with pytest.raises(MalformedToken):
            compact.b64url_decode(text.encode())


@settings(max_examples=1000, deadline=None, database=None)
@given(text=st.text(alphabet=MUTATION_CHARACTERS, max_size=14) | st.binary(max_size=9).map(b64))
def test_decode_agrees_with_pyjwt_except_for_padding(text: str) -> None:
    """PyJWT's own segment decoder is the reference: whatever ours takes, it takes with the same bytes; what
    it takes and ours refuses is padded."""
    theirs: bytes | None
    try:
        theirs = jwt.api_jws.PyJWS._decode_base64url_segment(text.encode(), "segment")
    except jwt.DecodeError:
        theirs = None
    try:
        ours: bytes | None = compact.b64url_decode(text.encode())
    except (MalformedToken, UnicodeEncodeError):
        ours = None
    if ours is not None:
        assert ours == theirs
    elif theirs is not None:
        assert text.endswith("=")


# --- JSON ---------------------------------------------------------------------------------------------


def test_json_object_returns_the_members() -> None:
    assert compact.json_object(segment({"a": 1, "b": [1.5, {"c": None}]})) == {"a": 1, "b": [1.5, {"c": None}]}


@pytest.mark.parametrize("text", [
    "[]", "null", "1", '"x"', "", " ", "{", "{}x", '{"a":1}{"b":2}',  # not one object
    " {}", "{} ", "{}\n", "\t{}",  # whitespace around it: no JWT encoder writes any
    '{"a":1,"a":2}', '{"a":{"b":1,"b":1}}', '{"alg":"ES256","alg":"none"}',  # repeated names
    '{"exp":NaN}', '{"exp":Infinity}', '{"exp":-Infinity}', '{"exp":1e999}', '{"exp":-1e400}',  # no floats beyond
    "\ufeff{}",  # a byte order mark
])
def test_json_object_refuses(text: str) -> None:
    with pytest.raises(MalformedToken, match="JSON object"):
        compact.json_object(b64(text.encode()).encode())
    if '"a":1,"a"' not in text and '"b":1,"b"' not in text and '"alg":"ES256","alg"' not in text:
        with pytest.raises(MalformedToken, match="JSON object"):
            compact.signed_json_object(b64(text.encode()).encode())


def test_repeated_members_are_looked_for_only_where_nobody_vouched_for_the_bytes() -> None:
    """A header is anyone's text; a payload is read only under a good signature, and only the broker's
    signer (which writes a dict, so never a repeated member) makes those."""
    repeated = b64(b'{"sub":"a","sub":"b"}').encode()
    with pytest.raises(MalformedToken):
        compact.json_object(repeated)
    assert compact.signed_json_object(repeated) == {"sub": "b"}  # as json and PyJWT read it


def test_json_must_be_utf8() -> None:
    utf16 = '{"sub":"x"}'.encode("utf-16")
    assert json.loads(utf16) == {"sub": "x"}  # the stock parser guesses the encoding of bytes
    for raw in (utf16, '{"sub":"x"}'.encode("utf-32"), b'{"sub":"\xff"}', b'{"sub":"\xc3"}'):
        with pytest.raises(MalformedToken):
            compact.json_object(b64(raw).encode())
        with pytest.raises(MalformedToken):
            compact.signed_json_object(b64(raw).encode())


def test_deep_nesting_is_malformed_not_a_crash() -> None:
    with pytest.raises(MalformedToken):
        compact.json_object(b64(b"[" * 50_000).encode())
    with pytest.raises(MalformedToken):
        compact.json_object(b64(b'{"a":' * 50_000).encode())


# --- the header ---------------------------------------------------------------------------------------


def test_header_fields() -> None:
    header = compact.parse_header(segment({"alg": "ES256", "kid": "k1", "typ": "AT+JWT", "jku": "http://x/",
                                           "x5u": "http://x/", "jwk": {"kty": "EC"}, "x5c": ["MIIB"]}))
    assert header == compact.JoseHeader(alg="ES256", kid="k1", typ="at+jwt", extended=False)
    odd = compact.parse_header(segment({"alg": ["ES256"], "kid": 7, "typ": 1}))
    assert (odd.alg, odd.kid, odd.typ) == (["ES256"], None, None)
    assert compact.parse_header(segment({"kid": ""})).kid is None
    assert compact.parse_header(segment({})) == compact.JoseHeader(alg=None, kid=None, typ=None, extended=False)


@pytest.mark.parametrize("members", [{"crit": ["exp"]}, {"crit": []}, {"b64": True}, {"b64": False},
                                     {"crit": ["b64"], "b64": False}, {"crit": None}])
def test_header_extensions_are_flagged(members: dict[str, object]) -> None:
    assert compact.parse_header(segment({"alg": "ES256", **members})).extended


def test_header_cache_parses_each_segment_once_and_stays_bounded() -> None:
    cache = compact.HeaderCache(size=4)
    first = segment({"alg": "ES256", "kid": "k0"})
    first_parsed = cache.header(first)
    assert cache.header(first) is first_parsed  # parsed once
    others = [segment({"alg": "ES256", "kid": f"k{n}"}) for n in range(1, 5)]
    parsed = [cache.header(other) for other in others]
    assert [cache.header(other) for other in others] == parsed
    assert cache.header(others[-1]) is parsed[-1]
    again = cache.header(first)  # evicted by the four newer ones, so parsed anew
    assert again == first_parsed and again is not first_parsed
    assert cache.header(others[0]) is not parsed[0]  # and the oldest of those left in its place


def test_header_cache_never_keeps_a_header_that_does_not_parse() -> None:
    cache = compact.HeaderCache()
    for bad in (segment([1]), b"e30x", segment({"a": 1})[:-1] + b"=", b64(b'{"a":1,"a":1}').encode()):
        for _ in range(2):
            with pytest.raises(MalformedToken):
                cache.header(bad)


# --- signatures ---------------------------------------------------------------------------------------


def es256_signature(key: ec.EllipticCurvePrivateKey, data: bytes) -> tuple[int, int]:
    return decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))


def raw(r: int, s: int) -> bytes:
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def test_es256_takes_raw_r_and_s_only() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    check = compact.signature_check("ES256", key.public_key())
    r, s = es256_signature(key, b"input")
    assert check(b"input", raw(r, s))
    assert not check(b"inpuT", raw(r, s))
    assert not check(b"input", encode_dss_signature(r, s))  # DER, as OpenSSL makes it
    assert not check(b"input", raw(r, s)[:-1])
    assert not check(b"input", raw(r, s) + b"\x00")
    assert not check(b"input", b"\x00" + raw(r, s)[:-1])
    assert not check(b"input", raw(0, 0))
    assert not check(b"input", raw(P256_ORDER, s))  # r and s must lie in [1, n - 1]
    assert not check(b"input", raw(r, P256_ORDER))
    assert not check(b"input", b"")


@settings(max_examples=500, deadline=None, database=None)
@given(st.binary(min_size=64, max_size=64) | st.sampled_from([
    bytes(64), b"\x80" + bytes(63), bytes(31) + b"\x80" + bytes(32), bytes(32) + b"\x7f" + b"\xff" * 31,
    b"\x00\x80" + bytes(62), bytes(63) + b"\x01", b"\xff" * 64, bytes(32) + b"\x00" * 31 + b"\x80"]))
def test_raw_to_der_is_what_cryptography_encodes(signature: bytes) -> None:
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    assert compact.raw_to_der(signature) == encode_dss_signature(r, s)
    assert decode_dss_signature(compact.raw_to_der(signature)) == (r, s)


def test_es256_high_s_twin_is_accepted_like_pyjwt_does() -> None:
    """(r, n - s) is as valid as (r, s). Tokens are never identified by their signature bytes here
    (revocation goes by jti, sid and sub), and refusing high S would refuse about half of the tokens other
    signers (and OpenSSL, which does not normalise S) produce, so the twin is accepted, as PyJWT does."""
    key = ec.generate_private_key(ec.SECP256R1())
    r, s = es256_signature(key, b"input")
    twin = raw(r, P256_ORDER - s)
    assert compact.signature_check("ES256", key.public_key())(b"input", twin)
    assert jwt.get_algorithm_by_name("ES256").verify(b"input", key.public_key(), twin)


def test_eddsa_signature_length_is_exact() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    check = compact.signature_check("EdDSA", key.public_key())
    signature = key.sign(b"input")
    assert check(b"input", signature)
    assert not check(b"input!", signature)
    for wrong in (signature[:-1], signature + b"\x00", b"", bytes(64)):
        assert not check(b"input", wrong)


def test_rs256_signature_is_exactly_the_modulus_length(rsa_key: rsa.RSAPrivateKey) -> None:
    check = compact.signature_check("RS256", rsa_key.public_key())
    signature = rsa_key.sign(b"input", padding.PKCS1v15(), hashes.SHA256())
    assert len(signature) == 256 and check(b"input", signature)
    assert not check(b"input", b"\x00" + signature)  # same integer, one byte longer
    assert not check(b"input!", signature)
    pss = rsa_key.sign(b"input", padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    assert not check(b"input", pss)  # a PS256 signature by the same key is not an RS256 one
    sha512 = rsa_key.sign(b"input", padding.PKCS1v15(), hashes.SHA512())
    assert not check(b"input", sha512)


def test_a_key_verifies_only_its_own_algorithm(rsa_key: rsa.RSAPrivateKey) -> None:
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key()
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    ed = ed25519.Ed25519PrivateKey.generate().public_key()
    mismatched: list[tuple[str, PublicKey]] = [
        ("ES256", p384), ("ES256", ed), ("ES256", rsa_key.public_key()), ("EdDSA", p256),
        ("RS256", p256), ("RS256", ed), ("HS256", p256), ("none", ed), ("ES384", p384), ("PS256", rsa_key.public_key()),
    ]
    for alg, key in mismatched:
        with pytest.raises(ValueError, match="cannot verify"):
            compact.signature_check(alg, key)


@dataclass(frozen=True, eq=False)
class Key:
    kid: str
    alg: str
    public_key: PublicKey


def test_signature_checks_follow_the_key_object_handed_out_for_a_kid() -> None:
    """A key ring reload or a JWKS refetch hands out a new object for a kid: its own key must be used."""
    checks = compact.SignatureChecks()
    old, new = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    old_key, new_key = Key("k", "ES256", old.public_key()), Key("k", "ES256", new.public_key())
    by_old, by_new = raw(*es256_signature(old, b"m")), raw(*es256_signature(new, b"m"))
    assert checks.check_for(old_key) is checks.check_for(old_key)
    assert checks.check_for(old_key)(b"m", by_old)
    assert checks.check_for(new_key)(b"m", by_new)
    assert not checks.check_for(new_key)(b"m", by_old)
    assert not checks.check_for(old_key)(b"m", by_new)
