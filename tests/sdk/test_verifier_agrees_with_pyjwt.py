"""Property: BrokerVerifier accepts exactly what the claim rules, written out here on plain PyJWT, accept, with
the same claims, on genuine tokens and on tokens with headers, claims and text mutated, for every algorithm, with the
keys fetched from a JWKS endpoint over HTTP.

The only disagreements allowed are the documented strictness (`stricter_here`)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.clock import SystemClock
from broker.signing import create_key
from broker.signing.keyfiles import SigningKey
from broker_sdk import BrokerVerifier, JwksCache, TokenRejected
from broker_sdk.jws import MAX_TOKEN_LENGTH, normalize_low_s
from tests.sdk.conftest import AUDIENCE, ISSUER, LEEWAY, TTL, JwksEndpoint, make_service
from tests.sdk.jws_strategies import SCOPES, claims, headers, mutated, stricter_here, unsigned_text
from tests.support.servers import ThreadedServer

EXAMPLES = 250
ALGORITHMS = frozenset({"ES256", "EdDSA", "RS256"})


def _time(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    return None if not isinstance(value, int | float) or isinstance(value, bool) else float(value)


def reference(token: str, keys: dict[str, SigningKey], now: float) -> dict[str, Any] | None:
    """BrokerVerifier.verify as it was, on PyJWT: the claims, or None where it refused the token."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    try:
        header = jwt.get_unverified_header(token)
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
    alg, typ, kid = header.get("alg"), header.get("typ"), header.get("kid")
    if "crit" in header or "b64" in header or not isinstance(alg, str) or alg not in ALGORITHMS:
        return None
    if not isinstance(typ, str) or typ.lower() not in {"at+jwt", "application/at+jwt"}:
        return None
    key = keys.get(kid) if isinstance(kid, str) and kid else None
    if key is None or key.alg != alg:
        return None
    try:
        decoded = jwt.PyJWS().decode_complete(token, key=key.public_key, algorithms=[key.alg])
        found = json.loads(decoded["payload"])
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
    if not isinstance(found, dict) or any(name not in found for name in ("iss", "sub", "aud", "exp", "iat", "jti")):
        return None
    if any(not isinstance(found[name], str) or not found[name] for name in ("sub", "jti")) or found["iss"] != ISSUER:
        return None
    if "scope" in found and not isinstance(found["scope"], str):
        return None
    aud = found["aud"]
    if AUDIENCE not in ([aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []):
        return None
    exp, iat = _time(found, "exp"), _time(found, "iat")
    nbf = _time(found, "nbf") if "nbf" in found else now
    if exp is None or iat is None or nbf is None:
        return None
    if now >= exp + LEEWAY or nbf > now + LEEWAY or iat > now + LEEWAY:
        return None
    return found


@dataclass
class World:
    key: SigningKey
    verifier: BrokerVerifier
    loop: asyncio.AbstractEventLoop
    now: int

    def verify(self, token: str) -> dict[str, object] | None:
        try:
            return self.loop.run_until_complete(self.verifier.verify(token))
        except TokenRejected:
            return None


@pytest.fixture(scope="module", params=sorted(ALGORITHMS))
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One key per algorithm, served as the broker serves its JWKS; one verifier and event loop for every
    example (the JWKS is fetched once; unknown kids cause no refetch)."""
    keys_dir = tmp_path_factory.mktemp(f"keys-{request.param}")
    create_key(keys_dir, alg=request.param, activate_at=SystemClock().now() - 1, clock=SystemClock(),
               jwks_max_age=300)
    ring, _ = make_service(keys_dir)
    now = int(time.time())
    loop = asyncio.new_event_loop()
    with ThreadedServer(JwksEndpoint(ring).app()) as server:
        http = httpx.AsyncClient()
        cache = JwksCache(f"{server.url}/jwks.json", http=http, min_refetch_interval=3600)
        verifier = BrokerVerifier(ISSUER, AUDIENCE, jwks=cache, leeway=LEEWAY, now=lambda: now)
        yield World(ring.signing_key(), verifier, loop, now)
        loop.run_until_complete(http.aclose())
    loop.close()


def test_agrees_with_the_pyjwt_implementation(world: World) -> None:
    outcomes: Counter[str] = Counter()
    key, signer = world.key, jwt.get_algorithm_by_name(world.key.alg)

    @settings(max_examples=EXAMPLES, deadline=None, database=None)
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        scope = data.draw(st.sampled_from(SCOPES), label="scope")
        header = data.draw(headers(alg=key.alg, kid=key.kid, changes=3 if scope in ("header", "everything") else 0),
                           label="header")
        payload = data.draw(claims(issuer=ISSUER, audience=AUDIENCE, now=world.now, ttl=TTL, leeway=LEEWAY,
                                   changes=3 if scope in ("claims", "everything") else 0), label="claims")
        text = unsigned_text(header, payload)
        genuine = f"{text}.{jwt.utils.base64url_encode(signer.sign(text.encode(), key.private_key)).decode()}"
        if key.alg == "ES256":
            genuine = normalize_low_s(genuine)  # as the broker signs (the high-S twin is refused by design)
        token = data.draw(mutated(genuine, edits=3 if scope in ("text", "everything") else 0), label="token")
        new, old = world.verify(token), reference(token, {key.kid: key}, world.now)
        if new is not None:
            assert old == new, "accepted a token the PyJWT implementation refused, or with other claims"
            outcomes["both accept"] += 1
        elif old is not None:
            assert stricter_here(token), "refused a token the PyJWT implementation accepted"
            outcomes["refused by design"] += 1
        else:
            outcomes["both refuse"] += 1

    check()
    assert outcomes["both accept"] >= EXAMPLES // 20 and outcomes["both refuse"] >= EXAMPLES // 5, outcomes
