"""Account deletion end to end: real servers, a real webhook receiver, a scan of Redis afterwards."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import jwt
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from broker.clients import secret_digest
from broker.config import Settings
from broker.flows.tokens import SESSION_GRANT
from tests.e2e.conftest import ALICE, Stack, live_stack, write_clients
from tests.support.browser import Browser
from tests.support.servers import ThreadedServer

GATEWAY_SECRET = "gateway-secret-for-deletion-tests-0123456789"
GATEWAY_AUDIENCE = "https://gateway.example.com"  # the gateway client may introspect the session tokens


@dataclass
class Receiver:
    tokens: list[str] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            self.tokens.append((await request.body()).decode())
            self.arrived.set()
            return Response(status_code=202)

        return Starlette(routes=[Route("/events", hook, methods=["POST"])])


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, ThreadedServer]]:
    sink = Receiver()
    server = ThreadedServer(sink.app()).start()
    yield sink, server
    server.stop()


@pytest.fixture
def stack(base_settings: Settings, receiver: tuple[Receiver, ThreadedServer], tmp_path: Path) -> Iterator[Stack]:
    clients = write_clients(tmp_path, f"clients:\n  - client_id: gateway\n"
                                      f"    client_secret_sha256: {secret_digest(GATEWAY_SECRET)}\n"
                                      f"    first_party: true\n    audience: {GATEWAY_AUDIENCE}\n")
    settings = base_settings.with_overrides(webhook_urls=(f"{receiver[1].url}/events",), clients_file=clients,
                                            gateway_audience=GATEWAY_AUDIENCE)
    with live_stack(settings) as running:
        yield running


def introspect(stack: Stack, token: str) -> dict[str, object]:
    auth = base64.b64encode(f"gateway:{GATEWAY_SECRET}".encode()).decode()
    response = httpx.post(f"{stack.broker.url}/oauth/introspect", data={"token": token},
                          headers={"Authorization": f"Basic {auth}"})
    assert response.status_code == 200
    return dict(response.json())


def everything_in(redis_sync: redis.Redis) -> dict[str, bytes]:
    """Every key with its serialized value, except the event pipeline: the stream and the webhook outbox carry
    events about the user (user.deleted above all) to downstream services, which is their purpose."""
    raw = redis.Redis(connection_pool=redis_sync.connection_pool)
    return {key: raw.dump(key) or b"" for key in redis_sync.keys("*")
            if not key.startswith("broker:{events}")}


def test_deletion_removes_every_trace_refuses_every_token_and_tells_everyone(
        stack: Stack, receiver: tuple[Receiver, ThreadedServer], redis_sync: redis.Redis) -> None:
    sink, receiver_server = receiver
    browser = Browser()
    consent = browser.get(f"{stack.broker.url}/login")
    assert browser.consent(consent, user=ALICE).status_code == 200
    cookie_jwt = browser.client.get(f"{stack.broker.url}/auth/verify").headers["authorization"][7:]
    pair = browser.client.post(f"{stack.broker.url}/oauth/token", data={"grant_type": SESSION_GRANT},
                               headers={"Origin": stack.broker.url}).json()
    sub = jwt.decode(cookie_jwt, options={"verify_signature": False})["sub"]
    # A revoked jti and a rotated family leave keys of their own: deletion must find those too.
    browser.client.post(f"{stack.broker.url}/oauth/revoke", data={"token": cookie_jwt})
    newer = browser.client.post(f"{stack.broker.url}/oauth/token",
                                data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}).json()
    proxied = httpx.get(f"{stack.broker.url}/tiktok/v2/user/info/", params={"fields": "open_id"},
                        headers={"Authorization": f"Bearer {newer['access_token']}"})
    assert proxied.status_code == 200  # leaves rate-limit buckets behind, which deletion must find too
    assert any(sub in key for key in redis_sync.keys("*"))

    assert introspect(stack, newer["access_token"])["active"] is True
    response = httpx.delete(f"{stack.broker.url}/account", headers={"Authorization": f"Bearer {newer['access_token']}"})
    assert response.status_code == 200, response.text
    receipt = response.json()
    assert receipt["user_id"] == sub and receipt["tiktok"] == "revoked"
    assert receipt["deleted"] == {"profile": True, "sessions": 1, "refresh_families": 1, "tiktok_tokens": True}

    # No key name or value anywhere holds the user id or the open_id (nor a TikTok token), but the marker that
    # stops a login racing the deletion from writing into the deleted account, which lasts two minutes.
    marker = f"broker:{{u:{sub}}}:deleted"
    assert 0 < redis_sync.pttl(marker) <= 120_000
    tiktok_tokens = [t.token for t in stack.tiktok.issued_tokens_for(ALICE)]
    for key, value in everything_in(redis_sync).items():
        if key == marker:
            continue
        for needle in (sub, ALICE, *tiktok_tokens):
            assert needle not in key and needle.encode() not in value, key
    # Every token issued before is refused at once, online.
    for token in (cookie_jwt, pair["access_token"], newer["access_token"], newer["refresh_token"]):
        assert introspect(stack, token) == {"active": False}
    for bearer in (pair["access_token"], newer["access_token"]):
        assert httpx.get(f"{stack.broker.url}/auth/verify",
                         headers={"Authorization": f"Bearer {bearer}"}).status_code == 401
    assert browser.client.get(f"{stack.broker.url}/auth/verify").status_code == 401
    # TikTok saw the revoke.
    assert [c["status"] for c in stack.tiktok.calls if c["endpoint"] == "revoke"] == [200]

    # A downstream receiver got a verifiable user.deleted Security Event Token.
    deadline = time.monotonic() + 10
    deleted_events = []
    while time.monotonic() < deadline and not deleted_events:
        sink.arrived.wait(0.2)
        for token in sink.tokens:
            claims = jwt.decode(token, jwt.PyJWKClient(f"{stack.broker.url}/.well-known/jwks.json")
                                .get_signing_key_from_jwt(token).key, algorithms=["ES256"],
                                audience=receiver_server.url, issuer=stack.settings.issuer)
            assert jwt.get_unverified_header(token)["typ"] == "secevent+jwt"
            if f"{stack.settings.issuer}/events/user.deleted" in claims["events"]:
                deleted_events.append(claims)
    assert deleted_events and deleted_events[0]["sub"] == sub
    event = deleted_events[0]["events"][f"{stack.settings.issuer}/events/user.deleted"]
    assert event["receipt_id"] == receipt["receipt_id"]
    # The stream keeps the event for services that read at their own pace.
    entries = redis_sync.xrange("broker:{events}")
    assert any(e[1]["type"] == "user.deleted" and e[1]["sub"] == sub for e in entries)

    # Signing in again makes a new account.
    again = Browser()
    page = again.get(f"{stack.broker.url}/login?prompt=login")
    assert again.consent(page, user=ALICE).status_code == 200
    new_sub = again.client.get(f"{stack.broker.url}/auth/verify").headers["x-auth-request-user"]
    assert new_sub != sub
    again.close()
    browser.close()
    assert json.loads(json.dumps(receipt))  # the receipt is plain JSON
