"""Broker JWTs: interoperable with PyJWT (JWKS over HTTP) and joserfc, and every forgery we know is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt as jose_jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import KeySet

from broker.errors import InvalidToken
from broker.signing import TokenService, create_key
from broker.signing.jwks import public_jwk, thumbprint
from tests.signing.conftest import AUDIENCE, ISSUER, LEEWAY, TTL, Env, b64, forge, low_s, rejected


class JwksServer:
    """A tiny HTTP server on loopback serving whatever body it is given, and counting its requests."""

    def __init__(self) -> None:
        self.body = b'{"keys":[]}'
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/.well-known/jwks.json"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def http_server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.close()


# --- interoperability -------------------------------------------------------------------------------


def test_issued_tokens_verify_with_pyjwt_over_http(env: Env, http_server: JwksServer) -> None:
    http_server.body = env.ring.jwks().body
    issued = env.service.issue(sub="u1", sid="s1", scope="openid",
                               extra={"tiktok_open_id": "oid", "name": "Ada", "picture": "https://p/x.jpg"})
    client = jwt.PyJWKClient(http_server.url, cache_jwk_set=False)
    signing_key = client.get_signing_key_from_jwt(issued.token)
    assert signing_key.key_id == env.kid
    claims = jwt.decode(issued.token, signing_key.key, algorithms=[env.alg], audience=AUDIENCE, issuer=ISSUER,
                        options={"require": ["exp", "iat", "nbf", "jti", "sub"]})
    assert claims == issued.claims
    assert claims["tiktok_open_id"] == "oid" and claims["exp"] == claims["iat"] + TTL == issued.expires_at
    header = jwt.get_unverified_header(issued.token)
    assert header == {"alg": env.alg, "kid": env.kid, "typ": "at+jwt"}
    assert http_server.requests == ["/.well-known/jwks.json"]


def test_issued_tokens_verify_with_joserfc(env: Env) -> None:
    token = env.issue()
    key_set = KeySet.import_key_set(json.loads(env.ring.jwks().body))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # joserfc flags the "EdDSA" name (RFC 9864)
        decoded = jose_jwt.decode(token, key_set, algorithms=[env.alg])
    registry = jose_jwt.JWTClaimsRegistry(
        now=int(env.clock.now()), iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": AUDIENCE}, sub={"essential": True}, jti={"essential": True},
        exp={"essential": True}, nbf={"essential": True}, iat={"essential": True})
    registry.validate(decoded.claims)
    assert decoded.header["kid"] == env.kid
    assert env.service.verify(token) == decoded.claims


def test_jwks_members(env: Env) -> None:
    [jwk] = json.loads(env.ring.jwks().body)["keys"]
    expected = {"ES256": {"kty", "crv", "x", "y"}, "EdDSA": {"kty", "crv", "x"}, "RS256": {"kty", "n", "e"}}
    assert set(jwk) == expected[env.alg] | {"kid", "alg", "use"}
    assert (jwk["kid"], jwk["alg"], jwk["use"]) == (env.kid, env.alg, "sig")
    assert "d" not in jwk and "p" not in jwk  # public members only


def test_claims_and_jti(es: Env) -> None:
    first, second = es.service.issue(sub="u1", sid="s1", scope="a"), es.service.issue(sub="u1", sid="s1", scope="a")
    assert first.claims["jti"] != second.claims["jti"]
    assert len(base64.urlsafe_b64decode(str(first.claims["jti"]) + "==")) >= 16  # >= 128 random bits
    assert set(first.claims) == {"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid", "scope"}
    custom = es.service.issue(sub="u1", sid="s1", scope="a", audience="client-1", ttl=60)
    assert custom.claims["aud"] == "client-1" and custom.claims["exp"] == custom.claims["iat"] + 60  # type: ignore[operator]
    assert es.service.verify(custom.token, audience="client-1")["sub"] == "u1"
    with pytest.raises(ValueError, match="sub"):
        es.service.issue(sub="u1", sid="s1", scope="a", extra={"sub": "admin"})
    with pytest.raises(ValueError, match="ttl"):
        es.service.issue(sub="u1", sid="s1", scope="a", ttl=TTL + 1)  # would outlive its key in the JWKS


# --- rejections ---------------------------------------------------------------------------------------


def test_tampered_payload(env: Env) -> None:
    header, _, signature = env.issue().split(".")
    evil = b64(json.dumps({**env.claims(), "sub": "admin"}).encode())
    rejected(env, f"{header}.{evil}.{signature}", "signature")


def test_tampered_signature(env: Env) -> None:
    header, payload, signature = env.issue().split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[len(raw) // 2] ^= 1
    rejected(env, f"{header}.{payload}.{b64(bytes(raw))}", "signature")


def test_expiry_honours_the_leeway(es: Env) -> None:
    token = es.issue()
    es.clock.advance(TTL + LEEWAY - 1)
    assert es.service.verify(token)["sub"] == "u1"
    es.clock.advance(1)
    rejected(es, token, "expired")


def test_not_yet_valid(es: Env) -> None:
    token = es.issue()
    es.clock.advance(-LEEWAY)
    assert es.service.verify(token)
    es.clock.advance(-1)
    rejected(es, token, "not yet valid")


def test_future_iat(es: Env) -> None:
    claims = es.claims()
    claims["iat"] = int(es.clock.now()) + LEEWAY + 1
    rejected(es, es.sign(claims), "future")


def test_wrong_issuer_and_audience(es: Env) -> None:
    other = TokenService(es.ring, issuer="https://evil.example", audience=AUDIENCE, ttl=TTL, leeway=LEEWAY,
                         clock=es.clock)
    rejected(es, other.issue(sub="u1", sid="s1", scope="a").token, "issuer")
    token = es.service.issue(sub="u1", sid="s1", scope="a", audience="https://other.example").token
    rejected(es, token, "audience")
    with pytest.raises(InvalidToken):
        es.service.verify(es.issue(), audience="https://other.example")


@pytest.mark.parametrize("missing", ["iss", "sub", "aud", "exp", "iat", "jti", "sid", "scope"])
def test_required_claims(es: Env, missing: str) -> None:
    claims = es.claims()
    del claims[missing]
    rejected(es, es.sign(claims), missing)


def test_nbf_is_optional_as_for_downstream_services_but_checked_when_present(es: Env) -> None:
    """One set of claim rules (the SDK's): the broker always issues nbf, but does not demand it."""
    claims = es.claims()
    del claims["nbf"]
    assert es.service.verify(es.sign(claims))["sub"] == "u1"
    rejected(es, es.sign({**es.claims(), "nbf": es.clock.now() + LEEWAY + 5}), "not yet valid")


def test_alg_none(env: Env) -> None:
    for alg in ("none", "None", "NONE"):
        rejected(env, forge({"alg": alg, "kid": env.kid, "typ": "at+jwt"}, env.claims()), "algorithm")


def test_hs256_signed_with_the_public_key(env: Env) -> None:
    public = env.ring.signing_key().public_key
    secrets = [
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        json.loads(env.ring.jwks().body)["keys"][0],
    ]
    for secret in secrets:
        raw = secret if isinstance(secret, bytes) else json.dumps(secret).encode()
        for alg in ("HS256", "HS384", "HS512"):
            digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
            token = forge({"alg": alg, "kid": env.kid, "typ": "at+jwt"}, env.claims(),
                          lambda data, raw=raw, digest=digest: hmac.new(raw, data, digest).digest())
            rejected(env, token, "algorithm")


def test_header_alg_must_equal_the_keys_alg(env: Env) -> None:
    other = {"ES256": "ES384", "EdDSA": "ES256", "RS256": "PS256"}[env.alg]
    rejected(env, forge({"alg": other, "kid": env.kid, "typ": "at+jwt"}, env.claims(), lambda d: b"x" * 64),
             "algorithm")


def test_pss_signature_by_the_same_rsa_key_is_refused(tmp_path: Path) -> None:
    rs = Env(tmp_path, "RS256")
    # Cryptographically valid under PS256 with the genuine key: only algorithm pinning refuses it.
    token = jwt.encode(rs.claims(), rs.ring.signing_key().private_key, algorithm="PS256",
                       headers={"kid": rs.kid, "typ": "at+jwt"})
    rejected(rs, token, "algorithm")


def test_unknown_and_missing_kid(es: Env) -> None:
    attacker = ec.generate_private_key(ec.SECP256R1())
    rejected(es, jwt.encode(es.claims(), attacker, algorithm="ES256", headers={"kid": "nope", "typ": "at+jwt"}),
             "unknown")
    genuine = es.ring.signing_key().private_key
    rejected(es, jwt.encode(es.claims(), genuine, algorithm="ES256", headers={"typ": "at+jwt"}), "key id")
    rejected(es, forge({"alg": "ES256", "kid": 7, "typ": "at+jwt"}, es.claims(), lambda d: b"x" * 64))


def test_key_carrying_headers_are_never_used(es: Env, http_server: JwksServer) -> None:
    attacker = ec.generate_private_key(ec.SECP256R1())
    attacker_jwk = public_jwk(attacker.public_key())
    attacker_kid = thumbprint(attacker_jwk)
    http_server.body = json.dumps({"keys": [{**attacker_jwk, "kid": attacker_kid, "alg": "ES256"}]}).encode()
    pointers = {"jku": http_server.url, "x5u": http_server.url, "jwk": {**attacker_jwk, "kid": attacker_kid},
                "x5c": ["MIIB"]}
    for kid in (attacker_kid, es.kid):  # the attacker's own kid, or ours with the attacker's signature
        token = jwt.encode(es.claims(), attacker, algorithm="ES256",
                           headers={"kid": kid, "typ": "at+jwt", **pointers})
        rejected(es, token)
    assert http_server.requests == []  # never fetched
    # The same headers on a genuine token change nothing either.
    assert es.service.verify(es.sign(es.claims(), **pointers))["sub"] == "u1"


def test_other_token_types_and_critical_headers(es: Env) -> None:
    rejected(es, es.sign(es.claims(), typ="JWT"), "access token")
    rejected(es, es.sign(es.claims(), crit=["exp"], exp=1))
    key = es.ring.signing_key()
    header = {"alg": "ES256", "kid": key.kid, "typ": "at+jwt", "crit": ["b64"], "b64": True}
    signer = jwt.get_algorithm_by_name("ES256")
    rejected(es, forge(header, es.claims(), lambda data: signer.sign(data, key.private_key)), "header")


def test_token_signed_by_an_expired_retired_key(es: Env) -> None:
    old = es.ring.signing_key()
    old_token = es.issue()
    new = create_key(es.ring.keys_dir, clock=es.clock, jwks_max_age=300)
    es.ring.reload_if_changed()
    es.clock.set(new.activate_at)
    assert es.ring.signing_key().kid == new.kid
    assert es.service.verify(old_token)  # retired, still published
    es.clock.set(new.activate_at + TTL + 300)
    fresh = low_s(jwt.encode(es.claims(), old.private_key, algorithm="ES256",
                             headers={"kid": old.kid, "typ": "at+jwt"}), "ES256")
    rejected(es, fresh, "unknown")


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "....", "e30.e30.", "é.é.é", "x" * 20000,
                                     "eyJhbGciOiJFUzI1NiJ9", "eyJhbGciOiJFUzI1NiJ9.!!!.!!!", "W10.e30.e30",
                                     "bnVsbA.e30.e30", b64(b"[" * 9000) + ".e30.e30"])
def test_garbage(es: Env, garbage: str) -> None:
    rejected(es, garbage)


def test_non_object_payload(es: Env) -> None:
    key = es.ring.signing_key()
    token = low_s(jwt.api_jws.encode(b"[1,2]", key.private_key, algorithm="ES256",
                                     headers={"kid": key.kid, "typ": "at+jwt"}), "ES256")
    rejected(es, token, "malformed")
