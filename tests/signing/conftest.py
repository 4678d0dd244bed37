"""Shared pieces for the signing tests: a key ring and TokenService per algorithm, a forge, a rejection check."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import jwt
import pytest

from broker.clock import FrozenClock
from broker.errors import InvalidToken
from broker.signing import KeyRing, TokenService, create_key
from broker_sdk.jws import normalize_low_s

ISSUER = "https://broker.example"
AUDIENCE = "https://api.example"
TTL = 300
LEEWAY = 10
ALGS = ["ES256", "EdDSA", "RS256"]


class Env:
    def __init__(self, keys_dir: Path, alg: str) -> None:
        # Real time, because PyJWT and joserfc check exp/iat against the host clock.
        self.clock = FrozenClock(float(int(time.time())))
        self.alg = alg
        self.kid = create_key(keys_dir, alg=alg, clock=self.clock, jwks_max_age=300).kid
        self.ring = KeyRing(keys_dir, clock=self.clock, max_token_lifetime=TTL, jwks_max_age=300)
        self.service = TokenService(self.ring, issuer=ISSUER, audience=AUDIENCE, ttl=TTL, leeway=LEEWAY,
                                    clock=self.clock)

    def issue(self) -> str:
        return self.service.issue(sub="u1", sid="s1", scope="openid profile").token

    def claims(self) -> dict[str, object]:
        now = int(self.clock.now())
        return {"iss": ISSUER, "sub": "u1", "aud": AUDIENCE, "exp": now + TTL, "iat": now, "nbf": now,
                "jti": "j" * 22, "sid": "s1", "scope": "openid"}

    def sign(self, claims: dict[str, object], **header: object) -> str:
        """A token signed by the genuine key with a header of the test's choosing."""
        key = self.ring.signing_key()
        fields: dict[str, object] = {"kid": key.kid, "typ": "at+jwt", **header}
        return low_s(jwt.encode(claims, key.private_key, algorithm=key.alg, headers=fields), key.alg)


@pytest.fixture(params=ALGS)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Env:
    return Env(tmp_path, request.param)


@pytest.fixture
def es(tmp_path: Path) -> Env:
    return Env(tmp_path, "ES256")


def low_s(token: str, alg: str) -> str:
    """The token as the broker would sign it: ES256 signatures in low-S form (verifiers refuse the high twin)."""
    return normalize_low_s(token) if alg == "ES256" else token


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, object], claims: dict[str, object], sign: object = None) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = sign(signing_input.encode()) if callable(sign) else b""
    return f"{signing_input}.{b64(signature)}"


def rejected(env: Env, token: str, reason: str = "") -> str:
    with pytest.raises(InvalidToken) as caught:
        env.service.verify(token)
    message = caught.value.description
    assert reason in message
    assert not any(part in message for part in token.split(".") if len(part) > 4)  # never echoed
    return message
