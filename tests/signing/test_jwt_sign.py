"""Signing is deterministic (RFC 6979 for ES256, as EdDSA and RS256 are by themselves), ES256 signatures come out
low-S, and PyJWT verifies what the broker signs."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest

from broker.clock import SystemClock
from broker.signing import create_key
from broker.signing.jwt_sign import sign_jwt
from broker.signing.keyfiles import SigningKey
from broker.signing.keyring import KeyRing
from broker_sdk.jws import P256_HALF_ORDER


def _key(directory: Path, alg: str) -> SigningKey:
    clock = SystemClock()
    create_key(directory, alg=alg, activate_at=clock.now() - 1, clock=clock, jwks_max_age=300)
    return KeyRing(directory, clock=clock, max_token_lifetime=600, jwks_max_age=300, alg=alg).signing_key()


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256"])
def test_the_same_claims_give_the_same_token_and_pyjwt_verifies_it(alg: str, tmp_path: Path) -> None:
    key = _key(tmp_path, alg)
    claims = {"sub": "u", "jti": "j", "iat": 1_700_000_000}
    token = sign_jwt(claims, key, "at+jwt")
    assert sign_jwt(claims, key, "at+jwt") == token
    assert sign_jwt({**claims, "jti": "k"}, key, "at+jwt") != token
    assert jwt.decode(token, key.public_key, algorithms=[alg]) == claims
    assert jwt.get_unverified_header(token) == {"alg": alg, "kid": key.kid, "typ": "at+jwt"}


def test_es256_signatures_are_low_s(tmp_path: Path) -> None:
    key = _key(tmp_path, "ES256")
    for n in range(64):  # a random signer makes a high S half of the time
        signature = jwt.utils.base64url_decode(sign_jwt({"n": n}, key, "at+jwt").rsplit(".", 1)[1])
        assert len(signature) == 64 and int.from_bytes(signature[32:], "big") <= P256_HALF_ORDER
