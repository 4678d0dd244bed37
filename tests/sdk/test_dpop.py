"""The SDK's DPoP proof check (RFC 9449) against proofs joserfc signs: what it accepts, what it refuses and why,
the RFC 7638 thumbprint, the replay cache and the binding of a token to its key."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from broker_sdk.dpop import (
    DPoPChecker,
    DPoPRejected,
    MemoryReplayCache,
    access_token_hash,
    check_proof,
    jwk_thumbprint,
    target_uri,
)
from tests.support.dpop import DPoPKey

URL = "https://api.example.com/photos"
NOW = time.time()


def test_thumbprint_is_rfc_7638() -> None:
    # RFC 7638 section 3.1's example key and thumbprint.
    key = {"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
           "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPe"
                "bWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368Q"
                "QMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2N"
                "cRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}
    assert jwk_thumbprint(key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256"])
def test_a_proof_from_joserfc_is_accepted_with_its_key_thumbprint(alg: str) -> None:
    key = DPoPKey(alg)
    proof = check_proof(key.proof("GET", URL, access_token="tok", iat=NOW), method="GET", url=URL, now=NOW,
                        access_token="tok")
    assert proof.jkt == key.jkt and proof.iat == int(NOW) and proof.nonce is None


def test_htu_ignores_query_fragment_case_and_default_port() -> None:
    assert target_uri("HTTPS://API.example.com:443/photos?x=1#f") == URL
    assert target_uri("http://127.0.0.1:8080") == "http://127.0.0.1:8080/"
    key = DPoPKey()
    check_proof(key.proof("GET", "https://api.example.com:443/photos"), method="GET", url=f"{URL}?page=2",
                now=time.time())


def reason(proof: str, *, method: str = "GET", url: str = URL, access_token: str | None = "tok",  # noqa: S107
           now: float = NOW) -> str:
    with pytest.raises(DPoPRejected) as refused:
        check_proof(proof, method=method, url=url, now=now, access_token=access_token)
    return refused.value.reason


def forged(header: dict[str, Any], claims: dict[str, Any], key: Any, alg: str = "ES256") -> str:
    return jwt.encode(claims, key, algorithm=alg, headers=header)


def test_what_is_refused_and_why() -> None:
    key = DPoPKey()
    good: dict[str, Any] = {"jti": "j1", "htm": "GET", "htu": URL, "iat": int(NOW), "ath": access_token_hash("tok")}
    assert "another HTTP method" in reason(key.proof("POST", URL, access_token="tok", iat=NOW))
    assert "another URL" in reason(key.proof("GET", "https://api.example.com/other", access_token="tok", iat=NOW))
    assert "too old" in reason(key.proof("GET", URL, access_token="tok", iat=NOW - 120))
    assert "from the future" in reason(key.proof("GET", URL, access_token="tok", iat=NOW + 60))
    assert "another access token" in reason(key.proof("GET", URL, access_token="other", iat=NOW))
    assert "another access token" in reason(key.proof("GET", URL, iat=NOW))  # no ath at all
    assert "needs a jti" in reason(key.proof("GET", URL, access_token="tok", iat=NOW, jti=""))
    private = ec.generate_private_key(ec.SECP256R1())
    public_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    assert "typ must be dpop+jwt" in reason(forged({"typ": "JWT", "jwk": public_jwk}, good, private))
    assert "no public jwk" in reason(forged({"typ": "dpop+jwt"}, good, private))
    private_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private))
    assert "no public jwk" in reason(forged({"typ": "dpop+jwt", "jwk": private_jwk}, good, private))
    other = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))
    assert "bad DPoP proof signature" in reason(forged({"typ": "dpop+jwt", "jwk": other}, good, private))
    secret = base64.urlsafe_b64encode(b"k" * 32).rstrip(b"=").decode()
    assert "algorithm not allowed" in reason(forged({"typ": "dpop+jwt", "jwk": {"kty": "oct", "k": secret}}, good,
                                                    b"k" * 32, "HS256"))
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    small_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(small.public_key()))
    with pytest.warns(jwt.warnings.InsecureKeyLengthWarning):  # PyJWT, signing for the attacker, says so too
        weak = forged({"typ": "dpop+jwt", "jwk": small_jwk}, good, small, "RS256")
    assert "too small" in reason(weak)
    assert "malformed" in reason("not.a.proof")
    assert "malformed" in reason("x" * 9000)


async def test_the_checker_remembers_jtis_and_binds_tokens_to_their_key() -> None:
    clock = [NOW]
    checker = DPoPChecker(replay=MemoryReplayCache(now=lambda: clock[0]), now=lambda: clock[0])
    key, other = DPoPKey(), DPoPKey()
    claims = {"sub": "u", "cnf": {"jkt": key.jkt}}
    proof = key.proof("GET", URL, access_token="tok", iat=NOW)
    assert (await checker.check_bound(claims, "tok", proof=proof, method="GET", url=URL)).jkt == key.jkt
    with pytest.raises(DPoPRejected, match="already used"):
        await checker.check_bound(claims, "tok", proof=proof, method="GET", url=URL)
    with pytest.raises(DPoPRejected, match="another key"):
        await checker.check_bound(claims, "tok", proof=other.proof("GET", URL, access_token="tok", iat=NOW),
                                  method="GET", url=URL)
    with pytest.raises(DPoPRejected, match="not DPoP-bound"):
        await checker.check_bound({"sub": "u"}, "tok", proof=proof, method="GET", url=URL)
    with pytest.raises(DPoPRejected, match="proof is required"):
        await checker.check_bound(claims, "tok", proof=None, method="GET", url=URL)
    clock[0] += 3600  # the remembered jti expired with the proofs it could be replayed in
    assert await checker.replay.first_use("anything", clock[0] + 1)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=4), max_leaves=12)
MEMBERS = st.sampled_from(["typ", "alg", "jwk", "kty", "crv", "x", "y", "n", "e", "jti", "htm", "htu", "iat", "ath",
                           "nonce", "d"])


@settings(max_examples=200, deadline=None)
@given(header=st.dictionaries(MEMBERS, JSON | st.just("dpop+jwt") | st.just("ES256"), max_size=5),
       claims=st.dictionaries(MEMBERS, JSON, max_size=6), signature=st.binary(max_size=80))
def test_any_shape_of_proof_is_accepted_or_refused_never_crashes(header: dict[str, Any], claims: dict[str, Any],
                                                                  signature: bytes) -> None:
    def segment(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    proof = ".".join((segment(json.dumps(header).encode()), segment(json.dumps(claims).encode()), segment(signature)))
    with pytest.raises(DPoPRejected):  # without a key to sign with, nothing passes
        check_proof(proof, method="GET", url=URL, now=NOW)
