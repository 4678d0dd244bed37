"""Online revocation checks against the real broker (with the TikTok emulator) over loopback HTTP: a token
revoked at /oauth/revoke still passes offline, and is rejected once introspection is enabled."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from broker.clients import secret_digest
from broker.clock import FrozenClock
from broker.config import Settings
from broker.flows.tokens import SESSION_GRANT
from broker.store.embedded import free_port
from broker_sdk import BrokerVerifier, Introspection, JwksCache, TokenRejected, VerifierUnavailable
from broker_sdk.introspection import basic_credentials
from tests.e2e.conftest import ALICE, Stack, live_stack, write_clients
from tests.support.browser import Browser

GATEWAY_SECRET = "gateway-secret-0123456789-abcdefghijklmnop"
# Introspection answers a client only for its own tokens and its audience: the gateway's is the session tokens'.
GATEWAY_AUDIENCE = "https://gateway.example.com"


@pytest.fixture
def stack(base_settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    clients = write_clients(tmp_path, f"""
clients:
  - client_id: gateway
    client_secret_sha256: {secret_digest(GATEWAY_SECRET)}
    token_endpoint_auth_method: client_secret_basic
    first_party: true
    audience: {GATEWAY_AUDIENCE}
""")
    settings = base_settings.with_overrides(clients_file=clients, gateway_audience=GATEWAY_AUDIENCE)
    with live_stack(settings) as running:
        yield running


@pytest.fixture
def access_token(stack: Stack) -> str:
    """Alice signs in through the emulator; her page gets a first token pair from the broker."""
    browser = Browser()
    try:
        assert browser.consent(browser.get(f"{stack.broker.url}/login"), user=ALICE).status_code == 200
        response = browser.client.post(f"{stack.broker.url}/oauth/token", data={"grant_type": SESSION_GRANT},
                                       headers={"Origin": stack.broker.url})
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])
    finally:
        browser.close()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def verifier(stack: Stack, http: httpx.AsyncClient, introspection: Introspection | None = None) -> BrokerVerifier:
    return BrokerVerifier(stack.settings.issuer, stack.settings.token_audience, introspection=introspection,
                          jwks=JwksCache(f"{stack.broker.url}/.well-known/jwks.json", http=http))


def introspection(stack: Stack, http: httpx.AsyncClient, secret: str = GATEWAY_SECRET, **options: Any
                  ) -> Introspection:
    return Introspection(f"{stack.broker.url}/oauth/introspect", "gateway", secret, http, **options)


async def revoke(stack: Stack, http: httpx.AsyncClient, token: str) -> None:
    response = await http.post(f"{stack.broker.url}/oauth/revoke", data={"token": token})
    assert response.status_code == 200


async def test_a_revoked_token_is_rejected_only_with_introspection(stack: Stack, access_token: str,
                                                                   http: httpx.AsyncClient) -> None:
    offline = verifier(stack, http)
    online = verifier(stack, http, introspection(stack, http))
    claims = await online.verify(access_token)
    assert claims["sub"] and claims["tiktok_open_id"] and claims["sid"]
    assert await offline.verify(access_token) == claims
    await revoke(stack, http, access_token)
    assert await offline.verify(access_token) == claims  # signature and times are still fine
    with pytest.raises(TokenRejected, match="token is not active"):
        await online.verify(access_token)
    assert online.introspection is not None and online.introspection.requests == 2  # cache_ttl 0: always asks


async def test_answers_are_cached_for_cache_ttl_only(stack: Stack, access_token: str,
                                                     http: httpx.AsyncClient) -> None:
    ticks = FrozenClock(0.0)
    check = introspection(stack, http, cache_ttl=5.0, clock=ticks.now)
    online = verifier(stack, http, check)
    await online.verify(access_token)
    await revoke(stack, http, access_token)
    assert await online.verify(access_token)  # the positive answer is remembered for up to 5 s
    assert check.requests == 1
    ticks.advance(5)
    with pytest.raises(TokenRejected, match="not active"):
        await online.verify(access_token)
    ticks.advance(4.9)
    with pytest.raises(TokenRejected, match="not active"):
        await online.verify(access_token)
    assert check.requests == 2  # the negative answer was remembered too


async def test_an_introspection_failure_fails_closed(stack: Stack, access_token: str,
                                                     http: httpx.AsyncClient) -> None:
    wrong_secret = verifier(stack, http, introspection(stack, http, secret="not-the-secret"))
    with pytest.raises(VerifierUnavailable, match="HTTP 401"):
        await wrong_secret.verify(access_token)
    nobody = Introspection(f"http://127.0.0.1:{free_port()}/oauth/introspect", "gateway", GATEWAY_SECRET, http)
    with pytest.raises(VerifierUnavailable, match="ConnectError"):
        await verifier(stack, http, nobody).verify(access_token)


async def test_garbage_is_rejected_before_any_introspection(stack: Stack, http: httpx.AsyncClient) -> None:
    check = introspection(stack, http)
    with pytest.raises(TokenRejected, match="malformed"):
        await verifier(stack, http, check).verify("x.y.z")
    assert check.requests == 0


def test_credentials_are_form_encoded_before_base64() -> None:
    assert basic_credentials("a:b", "p w%") == "Basic YSUzQWI6cCUyMHclMjU="


@pytest.mark.parametrize("answer", [b'{"active": "true"}', b"{}", b"[true]", b"not json"])
async def test_an_answer_that_is_not_rfc_7662_fails_closed(answer: bytes) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=answer))
    async with httpx.AsyncClient(transport=transport) as odd:
        with pytest.raises(VerifierUnavailable, match="no RFC 7662 answer"):
            await Introspection("http://broker.test/oauth/introspect", "gateway", "s", odd).is_active("t")
