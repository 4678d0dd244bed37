"""TokenService's decoding (PyJWT under the SDK's rules): each way a token can be malformed is refused, and keys
that leave the key ring stop verifying at once although their headers stay cached."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from broker.errors import InvalidToken
from broker.signing import create_key
from broker.signing.id_tokens import IdTokenSigner
from broker.signing.keyfiles import SigningKey, delete_key
from broker_sdk.jws import MAX_TOKEN_LENGTH
from tests.signing.conftest import AUDIENCE, ISSUER, TTL, Env, b64, low_s, rejected

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def signed(env: Env, header: dict[str, object] | bytes, payload: dict[str, object] | bytes,
           key: SigningKey | None = None) -> str:
    """A token over exactly these header and payload bytes, signed by the genuine key (or `key`)."""
    header_bytes = header if isinstance(header, bytes) else json.dumps(header).encode()
    payload_bytes = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = f"{b64(header_bytes)}.{b64(payload_bytes)}"
    key = key or env.ring.signing_key()
    signature = jwt.get_algorithm_by_name(key.alg).sign(signing_input.encode(), key.private_key)
    return low_s(f"{signing_input}.{b64(signature)}", key.alg)


def sign_text(env: Env, signing_input: str) -> str:
    """A token whose signature, by the genuine key, covers exactly this header.payload text."""
    key = env.ring.signing_key()
    signature = jwt.get_algorithm_by_name(key.alg).sign(signing_input.encode(), key.private_key)
    return low_s(f"{signing_input}.{b64(signature)}", key.alg)


def header(env: Env, **changes: object) -> dict[str, object]:
    members: dict[str, object] = {"alg": env.alg, "kid": env.kid, "typ": "at+jwt", **changes}
    return {name: value for name, value in members.items() if value is not None}


def raw_signature(token: str) -> bytes:
    return base64.urlsafe_b64decode(token.rsplit(".", 1)[1] + "==")


def with_signature(token: str, signature: bytes) -> str:
    return token.rsplit(".", 1)[0] + "." + b64(signature)


# --- base64url and segments ---------------------------------------------------------------------------


@pytest.mark.parametrize("segment", [0, 1, 2])
@pytest.mark.parametrize("padding", ["=", "==", "==="])
def test_padding_is_refused_in_every_segment(env: Env, segment: int, padding: str) -> None:
    token = env.issue()
    parts = token.split(".")
    parts[segment] += padding
    padded = ".".join(parts)
    if segment == 2 and len(padding) == -len(parts[2].rstrip("=")) % 4:
        # A stock decoder takes correct padding; the broker never sends it, and a verifier taking it would
        # accept two spellings of one token.
        assert jwt.api_jws.decode_complete(padded, env.ring.signing_key().public_key, algorithms=[env.alg])
    rejected(env, padded, "malformed token")


def test_non_canonical_base64url_is_refused(es: Env) -> None:
    """ES256 signatures are 86 characters, the last carrying 4 spare bits: setting one changes the text but
    not the bytes a lenient decoder returns."""
    token = es.issue()
    last = token[-1]
    index = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(last)
    twin = token[:-1] + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[index | 1]
    assert base64.urlsafe_b64decode(twin.rsplit(".", 1)[1] + "==") == raw_signature(token)
    assert es.service.verify(token)
    rejected(es, twin, "malformed token")
    # The same for payloads whose length leaves spare bits.
    tried = 0
    for filler in range(4):
        claims = {**es.claims(), "x": "y" * filler}
        good = signed(es, header(es), claims)
        head, payload, _ = good.split(".")
        if len(payload) % 4 in (2, 3):
            assert es.service.verify(good)["x"] == "y" * filler
            flipped = payload[:-1] + chr(ord(payload[-1]) + 1)  # A->B, Q->R, g->h...: a spare bit set
            # Validly signed as spelled: only the spelling is refused (after the signature, as malformed).
            assert rejected(es, sign_text(es, f"{head}.{flipped}")) == "malformed token"
            tried += 1
    assert tried >= 2


@pytest.mark.parametrize("change", [
    lambda t: t.replace("-", "+").replace("_", "/"),  # the standard alphabet
    lambda t: t.replace(".", ". ", 1),
    lambda t: t[:20] + "\n" + t[20:],
    lambda t: t + "\n",
    lambda t: " " + t,
    lambda t: t.replace(".", "%2E", 1),
    lambda t: t[:30] + "é" + t[30:],
    lambda t: t[:30] + "\x00" + t[30:],
])
def test_characters_outside_base64url_are_refused(es: Env, change: Callable[[str], str]) -> None:
    token = es.issue()
    while "-" not in token and "_" not in token:
        token = es.issue()
    rejected(es, change(token), "malformed token")


def test_wrong_segment_counts(env: Env) -> None:
    head, payload, signature = env.issue().split(".")
    for token in (f"{head}.{payload}", f"{head}.{payload}.{signature}.{signature}", f"{head}..{payload}.{signature}",
                  f"{head}.{payload}.{signature}.", f".{head}.{payload}.{signature}", f"{head}.{payload}.",
                  f"{head}.{payload}.{signature}.x.y", "..", "...."):
        rejected(env, token)


def test_huge_tokens_are_refused_unread(es: Env) -> None:
    token = es.service.issue(sub="u1", sid="s1", scope="openid", extra={"name": "n" * 9000}).token
    assert len(token) < MAX_TOKEN_LENGTH and es.service.verify(token)["name"] == "n" * 9000
    huge = es.service.issue(sub="u1", sid="s1", scope="openid", extra={"name": "n" * 13000}).token
    assert len(huge) > MAX_TOKEN_LENGTH
    rejected(es, huge, "malformed token")  # genuinely signed, but over the limit
    rejected(es, "a" * (MAX_TOKEN_LENGTH + 1), "malformed token")


# --- the header -------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "", None, "es256", "ES256 ", ["ES256"], 256, "HS256", "ES512"])
def test_alg_must_be_exactly_the_keys(es: Env, alg: object) -> None:
    rejected(es, signed(es, header(es, alg=alg), es.claims()), "algorithm not allowed for this key")


@pytest.mark.parametrize("kid", [None, "", 7, ["k"], {"kid": "k"}, True])
def test_kid_must_be_a_non_empty_string(es: Env, kid: object) -> None:
    members = header(es)
    members["kid"] = kid
    if kid is None:
        del members["kid"]
    # PyJWT refuses a kid that is not a string outright; an absent or empty one names no key.
    rejected(es, signed(es, members, es.claims()), "no key id" if kid in (None, "") else "malformed token")


def test_kid_is_matched_exactly(es: Env) -> None:
    for kid in (es.kid.lower(), es.kid.upper(), es.kid + " ", es.kid[:-1], "../" + es.kid):
        if kid != es.kid:
            rejected(es, signed(es, header(es, kid=kid), es.claims()), "unknown signing key")


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"])
def test_typ_is_compared_without_case(es: Env, typ: str) -> None:
    assert es.service.verify(signed(es, header(es, typ=typ), es.claims()))["sub"] == "u1"


@pytest.mark.parametrize("typ", [None, "", "JWT", "at+jwt ", "secevent+jwt", ["at+jwt"], 1, "application/jwt"])
def test_other_typs_are_not_access_tokens(es: Env, typ: object) -> None:
    rejected(es, signed(es, header(es, typ=typ), es.claims()), "not an access token")


def test_access_and_event_tokens_do_not_pass_for_each_other(es: Env) -> None:
    event = es.service.sign_event(audience=AUDIENCE, sub="u1", sid="s1", event_type="session-revoked", data={},
                                  jti="e1", iat=es.clock.now())
    assert es.service.verify_event(event, audience=AUDIENCE)["jti"] == "e1"
    rejected(es, event, "not an access token")
    access = es.issue()
    assert es.service.verify(access)
    with pytest.raises(Exception, match="not a security event token"):
        es.service.verify_event(access, audience=AUDIENCE)


@pytest.mark.parametrize("extension", [{"crit": ["exp"], "exp": 1}, {"crit": []}, {"crit": "b64"},
                                       {"b64": True}, {"b64": False, "crit": ["b64"]}])
def test_header_extensions_are_refused(es: Env, extension: dict[str, object]) -> None:
    reason = rejected(es, signed(es, header(es, **extension), es.claims()))
    assert reason in ("unsupported token header", "malformed token")


@pytest.mark.parametrize("raw", [b"[]", b"null", b'"at+jwt"', b"{"])
def test_headers_that_are_not_json_objects(es: Env, raw: bytes) -> None:
    rejected(es, signed(es, raw, es.claims()))


# --- signatures -----------------------------------------------------------------------------------


def test_es256_signature_lengths_and_der(es: Env) -> None:
    token = es.issue()
    signature = raw_signature(token)
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    for wrong in (signature[:-1], signature + b"\x00", b"\x00" + signature, signature * 2, b"",
                  encode_dss_signature(r, s)):
        rejected(es, with_signature(token, wrong), "bad signature")


def test_the_high_s_twin_of_a_signature_is_refused(es: Env) -> None:
    """(r, n - s) verifies mathematically wherever (r, s) does: a malleable copy of a genuine token. The broker
    signs low-S only and refuses the twin, so that each token has exactly one spelling."""
    for _ in range(8):  # the broker's own signatures are low-S every time, not half of the time
        token = es.issue()
        signature = raw_signature(token)
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        assert s <= P256_ORDER // 2
        twin = with_signature(token, r.to_bytes(32, "big") + (P256_ORDER - s).to_bytes(32, "big"))
        key = es.ring.signing_key()
        assert jwt.api_jws.decode_complete(twin, key.public_key, algorithms=["ES256"])  # plain PyJWT takes it
        assert es.service.verify(token)
        rejected(es, twin, "bad signature")


def test_signature_lengths_for_every_algorithm(env: Env) -> None:
    token = env.issue()
    signature = raw_signature(token)
    for wrong in (signature[:-1], signature + b"\x00", b"\x00" + signature, b""):
        rejected(env, with_signature(token, wrong), "bad signature")


# --- the payload ----------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"[1,2]", b'"claims"', b"1", b"null", b"true", b"", b"{", b'{"sub":"u1"}x',
                                     '{"sub":"u1"}'.encode("utf-16"), b'{"sub":"\xff"}'])
def test_payloads_that_are_not_json_objects(es: Env, payload: bytes) -> None:
    rejected(es, signed(es, header(es), payload), "malformed token")


def test_non_finite_numbers_are_malformed(es: Env) -> None:
    good = json.dumps(es.claims())
    for raw in (good[:-1] + ', "exp": 1e999}', good[:-1] + ', "x": NaN}', good[:-1] + ', "x": -Infinity}',
                good.replace(f'"exp": {es.claims()["exp"]}', '"exp": Infinity')):
        rejected(es, signed(es, header(es), raw.encode()), "malformed token")


def test_a_repeated_claim_needs_our_signature_and_reads_as_json_does(es: Env) -> None:
    """Repeated members are refused in headers (anyone's text). A payload is parsed only under a good
    signature, which only the broker's signer makes, and it never repeats a member: there the last value
    wins, as in json and PyJWT, and no check is paid for."""
    raw = (json.dumps(es.claims())[:-1] + ', "sub": "admin"}').encode()
    assert es.service.verify(signed(es, header(es), raw))["sub"] == "admin"
    head, _, signature = signed(es, header(es), es.claims()).split(".")
    rejected(es, f"{head}.{b64(raw)}.{signature}", "bad signature")  # anyone else's: refused unread


@pytest.mark.parametrize(("claim", "value", "reason"), [
    ("sub", 1, "malformed sub"), ("sub", "", "malformed sub"), ("sub", None, "malformed sub"),
    ("sub", ["u1"], "malformed sub"), ("jti", {"j": 1}, "malformed jti"), ("sid", 0, "malformed sid"),
    ("scope", ["openid"], "malformed scope"), ("scope", None, "malformed scope"),
    ("exp", "9999999999", "malformed exp"), ("exp", True, "malformed exp"), ("exp", None, "malformed exp"),
    ("exp", [1], "malformed exp"), ("nbf", "0", "malformed nbf"), ("iat", False, "malformed iat"),
    ("iss", None, "wrong issuer"), ("iss", ["https://broker.example"], "wrong issuer"),
    ("aud", None, "wrong audience"), ("aud", 1, "wrong audience"), ("aud", {"aud": AUDIENCE}, "wrong audience"),
    ("aud", [{"x": 1}, [AUDIENCE]], "wrong audience"), ("aud", [], "wrong audience"),
])
def test_claims_of_the_wrong_type(es: Env, claim: str, value: object, reason: str) -> None:
    rejected(es, signed(es, header(es), {**es.claims(), claim: value}), reason)


def test_an_audience_list_holds_strings_only(es: Env) -> None:
    claims = {**es.claims(), "aud": ["other", AUDIENCE]}
    assert es.service.verify(signed(es, header(es), claims))["aud"] == ["other", AUDIENCE]
    assert es.service.verify(signed(es, header(es), claims), audience=[AUDIENCE, "more"])
    for junk in ({"x": 1}, ["y"], 3, None):  # used to raise TypeError (unhashable) or pass unnoticed
        for audience in (None, [AUDIENCE, "more"]):
            with pytest.raises(InvalidToken, match="wrong audience"):
                es.service.verify(signed(es, header(es), {**claims, "aud": [junk, AUDIENCE]}), audience=audience)


def test_float_times_are_still_times(es: Env) -> None:
    now = es.clock.now()
    claims = {**es.claims(), "exp": now + 60.5, "iat": now - 0.5, "nbf": now - 0.5}
    assert es.service.verify(signed(es, header(es), claims))["exp"] == now + 60.5


# --- the key ring decides, on every token ---------------------------------------------------------------


def test_a_pruned_key_stops_verifying_at_once_although_its_header_is_cached(es: Env) -> None:
    old = es.ring.signing_key()
    token = es.issue()
    assert es.service.verify(token)  # header parsed and cached, signature check built
    successor = create_key(es.ring.keys_dir, clock=es.clock, jwks_max_age=300)
    es.ring.reload_if_changed()
    es.clock.set(successor.activate_at + 1)
    fresh = signed(es, header(es), es.claims(), key=old)  # the retired key, over claims still valid
    assert es.service.verify(fresh)
    delete_key(old)
    es.ring.reload_if_changed()
    rejected(es, fresh, "unknown signing key")
    rejected(es, token, "unknown signing key")


def test_a_retired_key_leaves_with_the_clock_although_its_header_is_cached(es: Env) -> None:
    old = es.ring.signing_key()
    successor = create_key(es.ring.keys_dir, clock=es.clock, jwks_max_age=300)
    es.ring.reload_if_changed()
    es.clock.set(successor.activate_at + TTL + 300 - 1)  # the last second the old key is published
    claims = es.claims()
    token = low_s(jwt.encode(claims, old.private_key, algorithm=old.alg, headers={"kid": old.kid, "typ": "at+jwt"}),
                  old.alg)
    assert es.service.verify(token)["sub"] == "u1"
    es.clock.advance(1)
    rejected(es, token, "unknown signing key")


def test_an_id_token_hint_in_another_spelling_than_the_brokers_names_no_session(es: Env) -> None:
    signer = IdTokenSigner(es.ring, issuer=ISSUER, clock=es.clock)
    token = signer.issue(sub="u1", client_id="app", ttl=TTL, auth_time=es.clock.now(), sid="s1", alg="ES256")
    assert signer.read_hint(token) is not None and signer.read_hint(token)["sid"] == "s1"  # type: ignore[index]
    signature = raw_signature(token)
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    twin = with_signature(token, r.to_bytes(32, "big") + (P256_ORDER - s).to_bytes(32, "big"))
    assert jwt.api_jws.decode_complete(twin, es.ring.signing_key().public_key, algorithms=["ES256"])
    assert signer.read_hint(twin) is None
    # Nor does any other spelling of the same token that PyJWT would take: a padded signature segment.
    assert jwt.api_jws.decode_complete(token + "==", es.ring.signing_key().public_key, algorithms=["ES256"])
    assert signer.read_hint(token + "==") is None
