"""/metrics over a live stack: each metric moves as real logins, refreshes, revocations and failures happen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from broker.config import Secret, Settings
from broker.flows.tokens import SESSION_GRANT
from broker.store.embedded import EmbeddedRedis, free_port
from broker.web.routes import ROUTES
from tests.e2e.conftest import ALICE, Stack, live_stack
from tests.e2e.test_login import log_in
from tests.e2e.test_tiktok_proxy import expire_stored_grant
from tests.support.browser import Browser
from tests.support.metrics import Scrape, scrape
from tests.support.outage import first_unavailable

REQUESTS = "broker_http_request_duration_seconds"
TIKTOK = "broker_tiktok_request_duration_seconds"
PROXY_ROUTE = "/tiktok/{path:path}"


def running(base: Settings, **overrides: object) -> Iterator[Stack]:
    with live_stack(base.with_overrides(**overrides)) as stack:
        yield stack


@pytest.fixture
def stack(base_settings: Settings) -> Iterator[Stack]:
    yield from running(base_settings)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def session_jwt(stack: Stack, browser: Browser) -> str:
    check = browser.client.get(f"{stack.broker.url}/auth/verify")
    assert check.status_code == 200
    return check.headers["authorization"].removeprefix("Bearer ")


def verify_bearer(stack: Stack, token: str) -> int:
    return httpx.get(f"{stack.broker.url}/auth/verify", headers=bearer(token)).status_code


def token_pair(stack: Stack, browser: Browser) -> dict[str, str]:
    response = browser.client.post(f"{stack.broker.url}/oauth/token", data={"grant_type": SESSION_GRANT},
                                   headers={"Origin": stack.broker.url})
    assert response.status_code == 200, response.text
    pair: dict[str, str] = response.json()
    return pair


def refresh(stack: Stack, refresh_token: str) -> httpx.Response:
    return httpx.post(f"{stack.broker.url}/oauth/token",
                      data={"grant_type": "refresh_token", "refresh_token": refresh_token})


def logout(stack: Stack, browser: Browser) -> None:
    response = browser.client.post(f"{stack.broker.url}/logout", headers={"Origin": stack.broker.url})
    assert response.status_code == 303, response.text


def test_a_login_and_gateway_checks_are_counted_by_route_template(stack: Stack, browser: Browser) -> None:
    assert log_in(stack, browser).status_code == 200
    session_jwt(stack, browser)
    session_jwt(stack, browser)
    assert httpx.get(f"{stack.broker.url}/no/such/page/4711").status_code == 404
    assert httpx.get(f"{stack.broker.url}/tiktok/v2/user/info/?fields=open_id").status_code == 401
    # A method the HTTP parser (httptools) knows but the broker serves nowhere: one "other" series, whatever it is.
    assert httpx.request("PURGE", f"{stack.broker.url}/healthz").status_code == 405

    seen = scrape(stack.broker.url)
    assert seen.value("broker_logins_total", outcome="success") == 1
    assert seen.count(REQUESTS, route="/callback", method="GET", status="303") == 1
    assert seen.count(REQUESTS, route="/auth/verify", method="GET", status="200") == 2
    assert seen.count(REQUESTS, route="unmatched", method="GET", status="404") == 1
    assert seen.count(REQUESTS, route=PROXY_ROUTE, method="GET", status="401") == 1
    assert seen.count(REQUESTS, route="/healthz", method="other", status="405") == 1
    # Labels are templates only: no raw path, no made-up method reaches the series.
    templates = {route.path for route in ROUTES} | {"unmatched"}
    assert seen.label_values(f"{REQUESTS}_count", "route") <= templates
    assert seen.label_values(f"{REQUESTS}_count", "method") <= {"GET", "HEAD", "POST", "other"}
    # The login called TikTok's token and user info endpoints once each, both fine.
    assert seen.count(TIKTOK, endpoint="token") == 1
    assert seen.count(TIKTOK, endpoint="user_info") == 1
    assert not seen.has("broker_tiktok_errors_total")


def test_refused_and_failed_logins_are_counted_by_outcome(stack: Stack, browser: Browser) -> None:
    consent = browser.get(f"{stack.broker.url}/login")
    assert browser.consent(consent, user=ALICE, action="deny").status_code == 403
    stack.tiktok.set_fault("user_info", "http_500", count=1)
    assert log_in(stack, browser).status_code == 503
    assert browser.client.get(f"{stack.broker.url}/callback?state=made-up&code=x").status_code == 400

    seen = scrape(stack.broker.url)
    assert seen.value("broker_logins_total", outcome="denied") == 1
    assert seen.value("broker_logins_total", outcome="tiktok_unavailable") == 1
    assert seen.value("broker_logins_total", outcome="invalid") == 1
    assert seen.value("broker_logins_total", outcome="success") == 0
    assert seen.value("broker_tiktok_errors_total", endpoint="user_info", kind="unavailable") == 1
    assert seen.count(TIKTOK, endpoint="user_info") == 1


def test_refresh_grants_are_counted_by_outcome(stack: Stack, browser: Browser) -> None:
    log_in(stack, browser)
    first = token_pair(stack, browser)
    second = refresh(stack, first["refresh_token"])
    assert second.status_code == 200
    assert refresh(stack, first["refresh_token"]).json() == second.json()  # inside the grace window: same pair
    assert refresh(stack, second.json()["refresh_token"]).status_code == 200
    assert refresh(stack, first["refresh_token"]).json()["error"] == "invalid_grant"  # spent: the family ends
    assert refresh(stack, "brt1.not-a-token").status_code == 400

    seen = scrape(stack.broker.url)
    assert seen.value("broker_refresh_grants_total", outcome="rotated") == 2
    assert seen.value("broker_refresh_grants_total", outcome="replayed") == 1
    assert seen.value("broker_refresh_grants_total", outcome="reused") == 1
    assert seen.value("broker_refresh_grants_total", outcome="invalid") == 1
    assert seen.value("broker_sessions_ended_total", cause="refresh_token_reused") == 1


def test_revoked_jti_sid_and_sub_are_counted_as_denylist_hits(stack: Stack, browser: Browser) -> None:
    log_in(stack, browser)
    pair = token_pair(stack, browser)
    revoked = httpx.post(f"{stack.broker.url}/oauth/revoke", data={"token": pair["access_token"]})
    assert revoked.status_code == 200
    assert verify_bearer(stack, pair["access_token"]) == 401
    assert scrape(stack.broker.url).value("broker_denylist_hits_total", kind="jti") == 1
    assert httpx.post(f"{stack.broker.url}/oauth/revoke", data={"token": pair["refresh_token"]}).status_code == 200
    assert scrape(stack.broker.url).value("broker_sessions_ended_total", cause="token_revoked") == 1

    ended = session_jwt(stack, browser)
    logout(stack, browser)
    assert verify_bearer(stack, ended) == 401
    assert scrape(stack.broker.url).value("broker_denylist_hits_total", kind="sid") == 1

    log_in(stack, browser)
    current = session_jwt(stack, browser)
    assert httpx.delete(f"{stack.broker.url}/account", headers=bearer(current)).status_code == 200
    assert verify_bearer(stack, current) == 401
    seen = scrape(stack.broker.url)
    assert seen.value("broker_denylist_hits_total", kind="sub") == 1
    assert seen.value("broker_denylist_hits_total", kind="jti") == 1
    assert seen.value("broker_accounts_deleted_total") == 1


def test_proxy_calls_refreshes_and_rate_limits_are_counted(base_settings: Settings, browser: Browser) -> None:
    for stack in running(base_settings, tiktok_proxy_user_rate=2):
        log_in(stack, browser)
        token = session_jwt(stack, browser)
        user_id = httpx.get(f"{stack.broker.url}/auth/verify", headers=bearer(token)).headers["x-auth-request-user"]
        profile = f"{stack.broker.url}/tiktok/v2/user/info/?fields=open_id"
        assert httpx.get(profile, headers=bearer(token)).status_code == 200
        expire_stored_grant(stack, user_id)  # the next call refreshes at TikTok first
        assert httpx.get(profile, headers=bearer(token)).status_code == 200
        limited = httpx.get(profile, headers=bearer(token))
        assert limited.status_code == 429 and limited.headers["retry-after"]

        seen = scrape(stack.broker.url)
        assert seen.count(TIKTOK, endpoint="proxy:/v2/user/info/") == 2
        assert seen.count(TIKTOK, endpoint="refresh") == 1
        assert seen.value("broker_rate_limited_total", endpoint=PROXY_ROUTE, key_kind="user") == 1
        assert seen.count(REQUESTS, route=PROXY_ROUTE, method="GET", status="429") == 1


def test_revoke_and_webhook_backlogs(base_settings: Settings, browser: Browser) -> None:
    nobody_listens = f"http://127.0.0.1:{free_port()}/events"
    for stack in running(base_settings, webhook_urls=(nobody_listens,)):
        stack.tiktok.set_fault("revoke", "http_500")  # TikTok refuses every revocation for now
        log_in(stack, browser)
        logout(stack, browser)  # the last session: the grant is revoked at TikTok, which fails

        seen = scrape(stack.broker.url)
        assert seen.value("broker_tiktok_revoke_backlog") == 1
        assert seen.value("broker_tiktok_revoke_failures_total") == 1
        assert seen.value("broker_tiktok_errors_total", endpoint="revoke", kind="unavailable") == 1
        assert seen.value("broker_sessions_ended_total", cause="logout") == 1
        # session.revoked and user.logged_out, each queued for the one receiver, which never answers.
        assert seen.value("broker_events_emitted_total") == 2
        assert seen.value("broker_webhook_backlog") == 2
        assert seen.value("broker_webhook_deliveries_total", outcome="delivered") == 0


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis", port=free_port())
    server.start()
    yield server
    server.stop()


def test_a_redis_outage_is_counted_once_per_failing_request(base_settings: Settings, own_redis: EmbeddedRedis,
                                                            browser: Browser) -> None:
    client = redis.Redis.from_url(own_redis.url)
    client.config_set("appendfsync", "always")  # so that the kill below loses nothing the login wrote
    client.close()
    revived = EmbeddedRedis(own_redis.data_dir, port=own_redis.port, password=own_redis.password)
    try:
        for stack in running(base_settings, redis_url=Secret(own_redis.url)):
            log_in(stack, browser)
            assert scrape(stack.broker.url).value("broker_webhook_backlog") == 0  # read from Redis: present

            own_redis.kill()
            verify_url = f"{stack.broker.url}/auth/verify"
            first_unavailable(lambda: browser.client.get(verify_url))  # noqa: B023 (called at once)
            assert browser.client.get(f"{stack.broker.url}/auth/verify").status_code == 503
            assert httpx.get(f"{stack.broker.url}/readyz").status_code == 503
            during: Scrape = scrape(stack.broker.url)
            assert during.value("broker_redis_errors_total", operation="/auth/verify") == 2
            assert during.value("broker_redis_errors_total", operation="/readyz") == 1
            assert during.value("broker_redis_errors_total", operation="/metrics") == 1
            assert during.count(REQUESTS, route="/auth/verify", status="503") == 2
            assert not during.has("broker_webhook_backlog")  # unknown now: absent rather than stale

            revived.start()
            assert browser.client.get(f"{stack.broker.url}/auth/verify").status_code == 200
            after = scrape(stack.broker.url)
            assert after.value("broker_redis_errors_total", operation="/auth/verify") == 2
            assert after.has("broker_webhook_backlog")
    finally:
        revived.stop()
