"""BrokerVerifier against the broker's own JWKS endpoint over real HTTP: its tokens pass, every forgery fails."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from broker.app import create_app
from broker.clock import FrozenClock, SystemClock
from broker.config import Settings
from broker.signing import TokenService, create_key
from broker.signing.keyfiles import SigningKey, write_key
from broker_sdk import BrokerVerifier, JwksCache, TokenRejected
from tests.sdk.conftest import (
    AUDIENCE,
    ISSUER,
    LEEWAY,
    TTL,
    Forge,
    JwksEndpoint,
    b64,
    make_service,
    start,
    unsigned,
)
from tests.support.servers import ThreadedServer


@pytest.fixture
def broker(base_settings: Settings) -> Iterator[ThreadedServer]:
    with ThreadedServer(create_app(base_settings)) as server:
        yield server


@pytest.fixture
def service(base_settings: Settings) -> TokenService:
    return make_service(base_settings.keys_dir, issuer=base_settings.issuer,
                        audience=base_settings.token_audience)[1]


@pytest.fixture
def forge(base_settings: Settings) -> Forge:
    ring, _ = make_service(base_settings.keys_dir)
    return Forge(ring.signing_key(), SystemClock().now(), base_settings.issuer, base_settings.token_audience)


@pytest.fixture
def attacker(tmp_path: Path) -> Callable[[str], SigningKey]:
    """A key of the given algorithm that the broker never published."""
    def make(alg: str) -> SigningKey:
        return write_key(tmp_path / f"attacker-{alg}", alg=alg, activate_at=0, created_at=0)
    return make


@pytest.fixture
def requests() -> list[httpx.Request]:
    """The requests the verifier's HTTP client sent to the broker."""
    return []


@pytest.fixture
def ticks() -> FrozenClock:
    """The JWKS cache's monotonic clock, moved by hand (the verifier still checks times on the wall clock)."""
    return FrozenClock(1000.0)


@pytest.fixture
async def verifier(broker: ThreadedServer, base_settings: Settings, requests: list[httpx.Request],
                   ticks: FrozenClock) -> AsyncIterator[BrokerVerifier]:
    async def record(request: httpx.Request) -> None:
        requests.append(request)

    async with httpx.AsyncClient(event_hooks={"request": [record]}) as http:
        cache = JwksCache(f"{broker.url}/.well-known/jwks.json", http=http, clock=ticks.now)
        yield BrokerVerifier(base_settings.issuer, base_settings.token_audience, jwks=cache, leeway=LEEWAY)


async def test_tokens_the_broker_issues_verify_with_one_jwks_fetch(verifier: BrokerVerifier, service: TokenService,
                                                                  requests: list[httpx.Request]) -> None:
    profile = {"tiktok_open_id": "open-1", "name": "Alice", "picture": "https://cdn.example/a.png"}
    issued = [service.issue(sub="user-1", sid="s1", scope="openid user.info.basic", extra=profile),
              service.issue(sub="user-2", sid="s2", scope="", extra={"client_id": "gateway"})]
    for _ in range(3):
        for token in issued:
            assert await verifier.verify(token.token) == token.claims
    assert len(requests) == 1 and requests[0].url.path == "/.well-known/jwks.json"


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256"])
async def test_each_signing_algorithm_verifies_and_can_be_disallowed(alg: str, tmp_path: Path,
                                                                     serve: list[ThreadedServer]) -> None:
    create_key(tmp_path, alg=alg, activate_at=SystemClock().now() - 1, clock=SystemClock(), jwks_max_age=300)
    ring, service = make_service(tmp_path)
    url = start(serve, JwksEndpoint(ring))
    token = service.issue(sub="u", sid="s", scope="").token
    checker = BrokerVerifier(ISSUER, AUDIENCE, jwks=JwksCache(url))
    assert (await checker.verify(token))["sub"] == "u"
    await checker.aclose()
    others = [a for a in ("ES256", "EdDSA", "RS256") if a != alg]
    strict = BrokerVerifier(ISSUER, AUDIENCE, jwks=JwksCache(url, algorithms=others), algorithms=others)
    with pytest.raises(TokenRejected, match="algorithm not allowed"):
        await strict.verify(token)
    await strict.aclose()


def hs256_with_public_key(forge: Forge, encoding: Encoding, fmt: PublicFormat) -> str:
    """The classic confusion attack: HMAC keyed with the published public key."""
    signing_input = unsigned(forge.header(alg="HS256"), forge.claims())[:-1]
    secret = forge.key.public_key.public_bytes(encoding, fmt)
    return signing_input + "." + b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())


def tampered_payload(forge: Forge) -> str:
    header, _, signature = forge.token().split(".")
    payload = unsigned({}, forge.claims(sub="admin")).split(".")[1]
    return f"{header}.{payload}.{signature}"


def tampered_signature(forge: Forge) -> str:
    token = forge.token()
    return token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")


def segments(token: str) -> list[str]:
    return token.split(".")


def raw_signature(token: str) -> bytes:
    return base64.urlsafe_b64decode(segments(token)[2] + "==")


def with_signature(token: str, signature: bytes) -> str:
    return token.rsplit(".", 1)[0] + "." + b64(signature)


def padded(forge: Forge, index: int) -> str:
    """Padding on one segment; a padded payload is signed as padded, so only the spelling is wrong."""
    parts = segments(forge.token())
    parts[index] += "=" * (-len(parts[index]) % 4 or 4)
    return forge.sign_text(".".join(parts[:2])) if index == 1 else ".".join(parts)


def respelled_payload(forge: Forge, change: Callable[[str], str]) -> str:
    """A payload segment changed by `change`, then genuinely signed: the signature holds, the text does not."""
    header, payload, _ = segments(forge.token())
    return forge.sign_text(f"{header}.{change(payload)}")


def non_canonical_signature(forge: Forge) -> str:
    """The ES256 signature's last character (of 86) carries 4 spare bits; set one: same bytes, other text."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    token = forge.token()
    return token[:-1] + alphabet[alphabet.index(token[-1]) | 1]


def der_signature(forge: Forge) -> str:
    token = forge.token()
    signature = raw_signature(token)
    return with_signature(token, encode_dss_signature(int.from_bytes(signature[:32]), int.from_bytes(signature[32:])))


def repeated_claim(forge: Forge) -> str:
    """A genuine token's signature on a payload with sub repeated: only the broker's signer could make such a
    payload pass (and it never repeats a member), so repeated claims are not looked for."""
    header, _, signature = segments(forge.token())
    payload = json.dumps(forge.claims())[:-1] + ', "sub": "admin"}'
    return f"{header}.{b64(payload.encode())}.{signature}"


P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

CASES: dict[str, tuple[Callable[[Forge, Callable[[str], SigningKey]], str], str]] = {
    "wrong issuer": (lambda f, a: f.token(iss="https://evil.example"), "wrong issuer"),
    "wrong audience": (lambda f, a: f.token(aud="https://other.example"), "wrong audience"),
    "audience list without ours": (lambda f, a: f.token(aud=["https://x.example"]), "wrong audience"),
    "expired": (lambda f, a: f.token(exp=int(f.now) - LEEWAY - 1), "token expired"),
    "not yet valid": (lambda f, a: f.token(nbf=int(f.now) + 60), "token not yet valid"),
    "issued in the future": (lambda f, a: f.token(iat=int(f.now) + 60), "issued in the future"),
    "no sub": (lambda f, a: f.token(sub=None), "no sub claim"),
    "no exp": (lambda f, a: f.token(exp=None), "no exp claim"),
    "string exp": (lambda f, a: f.token(exp="9999999999"), "malformed exp"),
    "alg none": (lambda f, a: unsigned(f.header(alg="none"), f.claims()), "algorithm not allowed"),
    "alg None": (lambda f, a: unsigned(f.header(alg="None"), f.claims()), "algorithm not allowed"),
    "HS256 with the PEM public key": (
        lambda f, a: hs256_with_public_key(f, Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
        "algorithm not allowed"),
    "HS256 with the DER public key": (
        lambda f, a: hs256_with_public_key(f, Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
        "algorithm not allowed"),
    "alg of another key type": (
        lambda f, a: f.token(header=f.header(alg="EdDSA"), signer=a("EdDSA")), "algorithm not allowed for this key"),
    "RS256 header on an EC key": (
        lambda f, a: f.token(header=f.header(alg="RS256"), signer=a("RS256")), "algorithm not allowed for this key"),
    "tampered payload": (lambda f, a: tampered_payload(f), "bad signature"),
    "tampered signature": (lambda f, a: tampered_signature(f), "bad signature"),
    "our kid, another key": (lambda f, a: f.token(signer=a("ES256")), "bad signature"),
    "embedded jwk": (lambda f, a: f.token(signer=a("ES256"), header=f.header(jwk=a("ES256").jwk)), "bad signature"),
    "jku, x5u and x5c": (lambda f, a: f.token(signer=a("ES256"), header=f.header(
        kid=a("ES256").kid, jku="http://127.0.0.1:9/jwks.json", x5u="http://127.0.0.1:9/c.pem",
        x5c=["MIIB"]), ), "unknown signing key"),
    "unknown kid": (lambda f, a: f.token(signer=a("ES256"), header=f.header(kid=a("ES256").kid)),
                    "unknown signing key"),
    "no kid": (lambda f, a: f.token(header=f.header(kid=None)), "no key id"),
    "typ JWT": (lambda f, a: f.token(header=f.header(typ="JWT")), "not an access token"),
    "no typ": (lambda f, a: f.token(header=f.header(typ="")), "not an access token"),
    "crit header": (lambda f, a: f.token(header=f.header(crit=["exp"], exp=1)),
                    "unsupported token header|malformed token"),
    "garbage": (lambda f, a: "not.a.jwt", "malformed token"),
    "empty": (lambda f, a: "", "malformed token"),
    "huge": (lambda f, a: "a" * 20_000, "malformed token"),
    # What the strict decoder refuses that a lenient one would take.
    "padded header": (lambda f, a: padded(f, 0), "malformed token"),
    "padded payload": (lambda f, a: padded(f, 1), "malformed token"),
    "padded signature": (lambda f, a: padded(f, 2), "malformed token"),
    "standard base64 alphabet": (lambda f, a: respelled_payload(f, lambda p: "+/" + p[2:]), "malformed token"),
    "line break inside": (lambda f, a: respelled_payload(f, lambda p: p[:8] + "\n" + p[8:]), "malformed token"),
    "non-ASCII character": (lambda f, a: f.token().replace(".", ".\u00e9", 1), "malformed token"),
    "non-canonical base64url": (lambda f, a: non_canonical_signature(f), "malformed token"),
    "two segments": (lambda f, a: f.token().rsplit(".", 1)[0], "malformed token"),
    "four segments": (lambda f, a: f.token() + ".e30", "malformed token"),
    "five segments (JWE shape)": (lambda f, a: f.token() + ".e30.e30", "malformed token"),
    "kid a number": (lambda f, a: f.signed(f.header(kid=7), f.claims()), "malformed token"),
    "typ a list": (lambda f, a: f.token(header=f.header(typ=["at+jwt"])), "not an access token"),
    "b64 false": (lambda f, a: f.signed(f.header(b64=False, crit=["b64"]), f.claims()),
                  "unsupported token header|malformed token"),
    "signature one byte short": (lambda f, a: with_signature(f.token(), raw_signature(f.token())[:-1]),
                                 "bad signature"),
    "signature with a leading zero": (lambda f, a: with_signature(f.token(), b"\0" + raw_signature(f.token())),
                                      "bad signature"),
    "DER signature": (lambda f, a: der_signature(f), "bad signature"),
    "payload a JSON array": (lambda f, a: f.signed(f.header(), b"[1, 2]"), "malformed token"),
    "payload in UTF-16": (lambda f, a: f.signed(f.header(), json.dumps(f.claims()).encode("utf-16")),
                          "malformed token"),
    "repeated claim, not signed by the broker": (lambda f, a: repeated_claim(f), "bad signature"),
    "exp of 1e999": (lambda f, a: f.signed(f.header(), json.dumps(f.claims()).replace('"exp": ', '"exp": 1e999, "x": ')
                                           .encode()), "malformed token"),
    "sub a number": (lambda f, a: f.token(sub=7), "malformed sub claim"),
    "aud list holding a non-string": (lambda f, a: f.token(aud=[{"x": 1}, f.audience]), "wrong audience"),
    "signed but too long": (lambda f, a: f.token(name="n" * 13_000), "malformed token"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_forgeries_and_misfits_are_rejected(case: str, verifier: BrokerVerifier, forge: Forge,
                                                  attacker: Callable[[str], SigningKey]) -> None:
    build, reason = CASES[case]
    keys: dict[str, SigningKey] = {}

    def key_for(alg: str) -> SigningKey:  # one attacker key per algorithm within a case
        if alg not in keys:
            keys[alg] = attacker(alg)
        return keys[alg]

    token = build(forge, key_for)
    with pytest.raises(TokenRejected, match=reason) as caught:
        await verifier.verify(token)
    assert caught.value.reason == str(caught.value)
    assert await verifier.verify(forge.token())  # the verifier still works for a good token


async def test_the_high_s_twin_of_a_signature_is_refused(verifier: BrokerVerifier, forge: Forge) -> None:
    """ECDSA signatures are malleable: (r, n - s) verifies wherever (r, s) does. The broker signs low-S only,
    and verifiers refuse the twin, so that a token has one valid spelling."""
    token = forge.token()
    signature = raw_signature(token)
    twin = with_signature(token, signature[:32] + (P256_ORDER - int.from_bytes(signature[32:])).to_bytes(32, "big"))
    assert await verifier.verify(token)
    with pytest.raises(TokenRejected, match="bad signature"):
        await verifier.verify(twin)


async def test_an_audience_list_holds_strings_only(verifier: BrokerVerifier, forge: Forge) -> None:
    assert (await verifier.verify(forge.token(aud=["other", forge.audience])))["aud"] == ["other", forge.audience]
    for junk in ({"x": 1}, ["y"], 3, None):
        with pytest.raises(TokenRejected, match="wrong audience"):
            await verifier.verify(forge.token(aud=[junk, forge.audience]))


async def test_a_key_gone_from_the_jwks_stops_verifying_although_its_header_is_cached(
        tmp_path: Path, serve: list[ThreadedServer]) -> None:
    create_key(tmp_path, alg="ES256", activate_at=SystemClock().now() - 1, clock=SystemClock(), jwks_max_age=300)
    ring, service = make_service(tmp_path)
    endpoint = JwksEndpoint(ring, cache_control="max-age=60")
    ticks = FrozenClock(1000.0)
    checker = BrokerVerifier(ISSUER, AUDIENCE, jwks=JwksCache(start(serve, endpoint), clock=ticks.now))
    token = service.issue(sub="u", sid="s", scope="").token
    assert (await checker.verify(token))["sub"] == "u"  # header cached, signature check built
    endpoint.body = b'{"keys": []}'  # the broker no longer publishes the key
    ticks.advance(61)
    with pytest.raises(TokenRejected, match="unknown signing key"):
        await checker.verify(token)
    await checker.aclose()


async def test_leeway_accepts_small_clock_skew(verifier: BrokerVerifier, forge: Forge) -> None:
    now = int(forge.now)
    for changes in ({"exp": now - LEEWAY + 2}, {"nbf": now + LEEWAY - 2}, {"iat": now + LEEWAY - 2},
                    {"aud": ["https://other.example", forge.audience]}, {"nbf": None}):
        assert (await verifier.verify(forge.token(**changes)))["sub"] == "user-1"


async def test_event_tokens_are_not_access_tokens(verifier: BrokerVerifier, service: TokenService,
                                                  base_settings: Settings) -> None:
    event = service.sign_event(audience=base_settings.token_audience, sub="user-1", sid="s1",
                               event_type="session-revoked", data={}, jti="e1", iat=SystemClock().now())
    with pytest.raises(TokenRejected, match="not an access token"):
        await verifier.verify(event)


async def test_an_unknown_kid_costs_one_refetch_then_none_within_the_interval(
        verifier: BrokerVerifier, forge: Forge, attacker: Callable[[str], SigningKey],
        requests: list[httpx.Request], ticks: FrozenClock) -> None:
    strangers = [attacker(alg) for alg in ("ES256", "EdDSA", "RS256")]

    async def reject_strangers() -> None:
        for stranger in strangers:
            with pytest.raises(TokenRejected, match="unknown signing key"):
                await verifier.verify(forge.token(signer=stranger, header=forge.header(kid=stranger.kid,
                                                                                        alg=stranger.alg)))

    await verifier.verify(forge.token())
    await reject_strangers()
    assert len(requests) == 1  # the JWKS was fetched less than min_refetch_interval (10 s) ago: no refetch
    ticks.advance(10)
    await reject_strangers()
    assert len(requests) == 2  # one refetch, in case the broker had just published the key, then no more
    assert verifier.jwks.stats.unknown_kid_refetches == 1
    ticks.advance(9.9)
    await reject_strangers()
    assert await verifier.verify(forge.token())
    assert len(requests) == 2


async def test_ttl_of_the_issued_tokens_is_honoured(verifier: BrokerVerifier, forge: Forge) -> None:
    forge.now -= TTL + LEEWAY  # a token issued one lifetime (plus the leeway) ago has just expired
    with pytest.raises(TokenRejected, match="token expired"):
        await verifier.verify(forge.token())


def test_constructor_refuses_symmetric_or_unknown_algorithms() -> None:
    for algorithms in (["HS256"], ["none"], ["ES256", "HS512"], []):
        with pytest.raises(ValueError, match="algorithms"):
            BrokerVerifier("https://i", "a", jwks=JwksCache("http://127.0.0.1:9/"), algorithms=algorithms)
        with pytest.raises(ValueError, match="algorithms"):
            JwksCache("http://127.0.0.1:9/", algorithms=algorithms)


async def test_default_jwks_url_is_the_issuers_well_known() -> None:
    checker = BrokerVerifier("https://auth.example.com/", "aud")
    assert checker.jwks.url == "https://auth.example.com/.well-known/jwks.json"
    await checker.aclose()
