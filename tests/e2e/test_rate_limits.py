"""Rate limits over real HTTP: 429 with Retry-After in each endpoint's own shape, refill, per-client limits, the
client address behind trusted proxies only, the off switch, and failing closed when Redis is away."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from broker.clients import secret_digest
from broker.config import RateLimit, Secret, Settings
from broker.store.embedded import free_port
from tests.e2e.conftest import Stack, start_stack
from tests.e2e.test_login import log_in
from tests.support.browser import Browser
from tests.support.metrics import scrape

TWO = RateLimit(2, 60, 2)
WEBAPP_SECRET = "webapp-secret-0123456789-abcdefghijklmnopq"
LOOPBACK = (ip_network("127.0.0.1/32"),)


@pytest.fixture
def clients_file(tmp_path: Path) -> Path:
    path = tmp_path / "clients.yaml"
    path.write_text(f"""
clients:
  - client_id: webapp
    client_secret_sha256: {secret_digest(WEBAPP_SECRET)}
    redirect_uris: ["https://app.example.com/cb"]
    scopes: [openid]
""")
    return path


@pytest.fixture
def run(base_settings: Settings, clients_file: Path) -> Iterator[Callable[..., Stack]]:
    started: list[Any] = []

    def start(**overrides: Any) -> Stack:
        small = {"rate_limit_login": TWO, "rate_limit_oauth": TWO, "rate_limit_webhook": TWO}
        stack, servers = start_stack(base_settings.with_overrides(clients_file=clients_file,
                                                                  **{**small, **overrides}))
        started.extend(servers)
        return stack

    yield start
    for server in started:
        server.stop()


def call(stack: Stack, endpoint: str, **headers: str) -> httpx.Response:
    """One request to a limited endpoint: cheap, and refused for its own reasons before any limit is met."""
    url, hdrs = stack.broker.url, {name.replace("_", "-"): value for name, value in headers.items()}
    with httpx.Client(timeout=10, follow_redirects=False, headers=hdrs) as client:
        if endpoint == "login":
            return client.get(f"{url}/login")
        if endpoint == "callback":
            return client.get(f"{url}/callback", params={"state": "nope", "code": "nope"})
        if endpoint == "authorize":
            return client.get(f"{url}/authorize", params={"client_id": "webapp", "response_type": "code"})
        if endpoint == "token":
            return client.post(f"{url}/oauth/token", data={"grant_type": "password"})
        if endpoint == "revoke":
            return client.post(f"{url}/oauth/revoke", data={"token": "not-a-token"})
        if endpoint == "introspect":
            return client.post(f"{url}/oauth/introspect", data={"token": "x"}, auth=("webapp", "wrong"))
        assert endpoint == "webhook"
        return client.post(f"{url}/webhooks/tiktok", content=b"{}", headers={"TikTok-Signature": "t=1,s=00"})


BROWSER_ENDPOINTS = ("login", "callback", "authorize")
API_ENDPOINTS = ("token", "revoke", "introspect", "webhook")
# Each endpoint's route template, as /metrics labels it.
ROUTE = {"login": "/login", "callback": "/callback", "authorize": "/authorize", "token": "/oauth/token",
         "revoke": "/oauth/revoke", "introspect": "/oauth/introspect", "webhook": "/webhooks/tiktok"}
REFUSED = "broker_rate_limited_total"
REQUESTS = "broker_http_request_duration_seconds"


def test_every_limited_endpoint_answers_429_with_retry_after_in_its_own_shape(run: Callable[..., Stack]) -> None:
    stack = run()
    for endpoint in BROWSER_ENDPOINTS + API_ENDPOINTS:
        # Each endpoint has a bucket of its own: the ones spent before do not touch this one.
        first, second = call(stack, endpoint), call(stack, endpoint)
        assert first.status_code != 429 and second.status_code != 429, (endpoint, first.text)
        refused = call(stack, endpoint)
        assert refused.status_code == 429, (endpoint, refused.text)
        assert 1 <= int(refused.headers["retry-after"]) <= 30, endpoint  # whole seconds: two per minute
        assert refused.headers["cache-control"] == "no-store"
        if endpoint in BROWSER_ENDPOINTS:
            assert refused.headers["content-type"].startswith("text/html"), endpoint
            assert "rate_limited" in refused.text and "Too many requests" in refused.text
        else:
            assert refused.json() == {"error": "rate_limited",
                                      "error_description": "Too many requests. Please retry later."}, endpoint
    # Endpoints that are not limited stay open to the same address.
    assert httpx.get(f"{stack.broker.url}/.well-known/jwks.json").status_code == 200

    # Each refusal is counted once, under the route the request metrics name and the address bucket.
    seen = scrape(stack.broker.url)
    for endpoint in BROWSER_ENDPOINTS + API_ENDPOINTS:
        assert seen.value(REFUSED, endpoint=ROUTE[endpoint], key_kind="ip") == 1, endpoint
        assert seen.value(REFUSED, endpoint=ROUTE[endpoint], key_kind="client") == 0, endpoint
        method = "GET" if endpoint in BROWSER_ENDPOINTS else "POST"
        assert seen.count(REQUESTS, route=ROUTE[endpoint], method=method, status="429") == 1, endpoint


def test_a_bucket_refills_after_retry_after(run: Callable[..., Stack]) -> None:
    stack = run(rate_limit_oauth=RateLimit(1, 2, 1))  # one request per 2 s
    assert call(stack, "revoke").status_code == 200
    refused = call(stack, "revoke")
    assert refused.status_code == 429 and refused.headers["retry-after"] in ("1", "2")
    time.sleep(int(refused.headers["retry-after"]))
    assert call(stack, "revoke").status_code == 200


def test_a_registered_client_is_limited_over_all_its_addresses(run: Callable[..., Stack]) -> None:
    stack = run(trusted_proxies=LOOPBACK, rate_limit_client=RateLimit(3, 60, 3))
    answers = [call(stack, "introspect", x_forwarded_for=f"198.51.100.{n}").status_code for n in range(4)]
    assert answers == [401, 401, 401, 429]  # wrong secret three times from three addresses, then limited
    assert call(stack, "token", x_forwarded_for="198.51.100.9").status_code == 400  # another endpoint's bucket
    seen = scrape(stack.broker.url)
    assert seen.value(REFUSED, endpoint="/oauth/introspect", key_kind="client") == 1
    assert seen.value(REFUSED, endpoint="/oauth/introspect", key_kind="ip") == 0


def test_the_client_address_comes_from_x_forwarded_for_only_behind_a_trusted_proxy(
        run: Callable[..., Stack]) -> None:
    # Two replicas on one Redis: one trusts nobody (the default), the other trusts its loopback gateway.
    direct, behind = run(), run(trusted_proxies=LOOPBACK)

    # A caller that is no proxy cannot escape its limit by inventing addresses ...
    spoofed = [call(direct, "revoke", x_forwarded_for=f"203.0.113.{n}").status_code for n in range(3)]
    assert spoofed == [200, 200, 429]
    # ... nor spend another address's allowance: 203.0.113.0 and .1 were never charged.
    assert call(behind, "revoke", x_forwarded_for="203.0.113.0").status_code == 200
    assert call(behind, "revoke", x_forwarded_for="203.0.113.1").status_code == 200
    # What it did spend is the allowance of its real address, 127.0.0.1, on every replica.
    assert call(behind, "revoke").status_code == 429

    # Behind the trusted proxy the client is the right-most untrusted hop; whatever it prepends is ignored.
    assert call(behind, "revoke", x_forwarded_for="198.51.100.1, 192.0.2.5").status_code == 200
    assert call(behind, "revoke", x_forwarded_for="198.51.100.2, 192.0.2.5").status_code == 200
    assert call(behind, "revoke", x_forwarded_for="198.51.100.3, 192.0.2.5").status_code == 429
    assert call(behind, "revoke", x_forwarded_for="192.0.2.6").status_code == 200


def test_sessions_record_the_forwarded_client_address_only_from_a_trusted_proxy(
        run: Callable[..., Stack], redis_sync: redis.Redis) -> None:
    for trusted, expected in ((LOOPBACK, "203.0.113.50"), ((), "127.0.0.1")):
        stack = run(trusted_proxies=trusted)
        person = Browser()
        try:
            person.client.headers["X-Forwarded-For"] = "203.0.113.50"
            assert log_in(stack, person).status_code == 200
        finally:
            person.close()
        user_id, _, _ = person.client.cookies["broker_session"].partition(".")
        sids = redis_sync.zrange(f"broker:{{u:{user_id}}}:sessions", 0, -1)
        assert [redis_sync.hget(f"broker:{{u:{user_id}}}:s:{sid}", "ip") for sid in sids][-1] == expected


def test_the_off_switch_counts_nothing(run: Callable[..., Stack], redis_sync: redis.Redis) -> None:
    stack = run(rate_limits=False, rate_limit_oauth=RateLimit(1, 60, 1), rate_limit_login=RateLimit(1, 60, 1))
    assert [call(stack, "revoke").status_code for _ in range(5)] == [200] * 5
    assert [call(stack, "login").status_code for _ in range(3)] == [302] * 3
    assert redis_sync.keys("broker:{rl:*") == []


@pytest.mark.parametrize("limits_on", [True, False], ids=["limits-on", "limits-off"])
def test_redis_down_while_checking_a_limit_fails_closed(base_settings: Settings, limits_on: bool) -> None:
    dead = Secret(f"redis://127.0.0.1:{free_port()}/0")
    stack, servers = start_stack(base_settings.with_overrides(redis_url=dead, rate_limits=limits_on))
    try:
        # An unsupported grant needs no Redis at all: only the limiter does, and it must not let it through.
        answer = call(stack, "token")
        if limits_on:
            assert answer.status_code == 503 and int(answer.headers["retry-after"]) >= 1
            assert answer.json()["error"] == "temporarily_unavailable"
        else:
            assert answer.status_code == 400 and answer.json()["error"] == "unsupported_grant_type"
    finally:
        for server in servers:
            server.stop()
