"""The PyJWT example in docs/downstream-services.md, run as written against a live JWKS: it accepts a broker
access token and refuses a token without `exp` and an event token signed by the same key."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from broker.app import create_app
from broker.config import Settings
from broker.signing.keyring import KeyRing
from broker.store.embedded import free_port
from tests.support.servers import ThreadedServer

DOC = Path(__file__).resolve().parents[2] / "docs" / "downstream-services.md"
EXAMPLE = re.search(r"### Verifying broker JWTs in a service\n\n```python\n(.*?)```", DOC.read_text(), re.DOTALL)


@pytest.fixture
def live(base_settings: Settings) -> Iterator[tuple[str, KeyRing]]:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    settings = base_settings.with_overrides(issuer=issuer)
    app = create_app(settings)
    with ThreadedServer(app, port):
        yield issuer, app.state.services.discovery.keyring


def run_example(issuer: str, token: str) -> dict[str, object]:
    assert EXAMPLE is not None, "the example moved"
    code = EXAMPLE.group(1).replace("https://auth.example.com", issuer)
    scope: dict[str, object] = {"token": token}
    exec(code, scope)  # noqa: S102 (our own documentation)
    claims = scope["claims"]
    assert isinstance(claims, dict)
    return claims


def signed(ring: KeyRing, claims: dict[str, object], typ: str) -> str:
    key = ring.signing_key()
    return jwt.encode(claims, key.private_key, algorithm=key.alg, headers={"kid": key.kid, "typ": typ})


def test_the_documented_check_accepts_access_tokens_and_refuses_the_rest(live: tuple[str, KeyRing]) -> None:
    issuer, ring = live
    now = int(time.time())
    claims = {"iss": issuer, "aud": issuer, "sub": "u" * 22, "exp": now + 300, "iat": now, "jti": "j" * 22,
              "sid": "s1", "tiktok_open_id": "open-id"}
    assert run_example(issuer, signed(ring, claims, "at+jwt"))["sub"] == "u" * 22
    without_exp = {name: value for name, value in claims.items() if name != "exp"}
    with pytest.raises(jwt.MissingRequiredClaimError):
        run_example(issuer, signed(ring, without_exp, "at+jwt"))
    with pytest.raises(jwt.InvalidTokenError, match="not a broker access token"):
        run_example(issuer, signed(ring, claims, "secevent+jwt"))
