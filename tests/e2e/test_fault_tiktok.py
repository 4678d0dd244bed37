"""TikTok (the emulator) slow, failing, rate-limiting or answering garbage while the broker refreshes a user's
TikTok grant for a /tiktok/... call, or while the call itself runs: a clear error in the broker's JSON shape,
within the broker's TikTok timeout, TikTok's log_id in the log and never in the answer, the grant never lost,
and the next call works once TikTok recovers. (Failures during the login itself: tests/e2e/test_login.py.)"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from broker.config import Settings
from tests.e2e.conftest import Stack, live_stack
from tests.support.log_ids import record_log_ids
from tests.support.people import Person, age_grant, sign_in, stored_grant
from tiktok_emulator import ids

TIMEOUT = 0.5  # BROKER_TIKTOK_TIMEOUT in these tests
SLOW_MS = 2000  # how long a "latency" fault keeps TikTok silent: four times the timeout


@pytest.fixture
def impatient(base_settings: Settings) -> Iterator[Stack]:
    with live_stack(base_settings.with_overrides(tiktok_timeout=TIMEOUT)) as running:
        yield running


@pytest.fixture
def log_ids(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return record_log_ids(monkeypatch)


def profile_call(stack: Stack, person: Person) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.get(f"{stack.broker.url}/tiktok/v2/user/info/", params={"fields": "open_id,display_name"},
                         headers=person.bearer_header, timeout=30)
    return response, time.monotonic() - started


def live_refresh_tokens(stack: Stack, person: Person) -> list[str]:
    open_id = ids.derived_open_id(stack.settings.tiktok_client_key, person.name)
    return [t.token for t in stack.tiktok.issued_tokens_for(open_id) if t.kind == "refresh" and t.active]


def assert_broker_error(response: httpx.Response, status: int, code: str, log_ids: list[str]) -> None:
    """The broker's own JSON error (not TikTok's body passed through), without any TikTok log_id in it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == code and response.json()["error_description"]
    if status == 503:
        assert int(response.headers["retry-after"]) > 0
    exposed = response.text + "".join(f"{k}:{v}" for k, v in response.headers.items())
    assert not [log_id for log_id in log_ids if log_id in exposed]


REFRESH_FAULTS = [
    ("latency", 503, "temporarily_unavailable"),
    ("http_500", 503, "temporarily_unavailable"),
    ("error_200", 503, "temporarily_unavailable"),
    ("rate_limit", 503, "temporarily_unavailable"),
    ("garbage", 502, "upstream_error"),
]


@pytest.mark.parametrize(("mode", "status", "code"), REFRESH_FAULTS)
def test_tiktok_failing_during_a_refresh_never_loses_the_grant(
        impatient: Stack, log_ids: list[str], redis_sync: redis.Redis, caplog: pytest.LogCaptureFixture,
        mode: str, status: int, code: str) -> None:
    stack = impatient
    person = sign_in(stack.broker.url, f"Refresh {mode}")
    aged = age_grant(stack.settings, person.sub, time.time() - 1)  # the next call must refresh first
    version = stored_grant(stack.settings, person.sub)
    assert version is not None
    stack.tiktok.set_fault("token", mode, latency_ms=SLOW_MS, count=1)
    first_log_id = len(log_ids)

    response, took = profile_call(stack, person)

    assert_broker_error(response, status, code, log_ids)
    assert took < SLOW_MS / 1000  # the broker's timeout answered, not TikTok
    if mode != "latency":  # a timeout has no log_id; every other failure names TikTok's in the log
        (sent,) = log_ids[first_log_id:]
        assert sent in caplog.text
    user_key = f"broker:{{u:{person.sub}}}"
    assert redis_sync.hget(f"{user_key}:user", "tiktok_link") == "linked"
    assert redis_sync.exists(f"{user_key}:tiktok") == 1
    assert not [c for c in stack.tiktok.calls if c["endpoint"] == "user_info" and c["token"] == aged.access_token][1:]

    # TikTok recovers. A slow TikTok still completes the refresh it was sent (and rotates the refresh token)
    # after the broker stopped waiting; the next call comes only after that, as it would in real life.
    deadline = time.monotonic() + 10
    while not [c for c in stack.tiktok.calls if c["grant_type"] == "refresh_token"]:
        assert time.monotonic() < deadline, "TikTok never finished the refresh"
        time.sleep(0.05)
    answer = profile_call(stack, person)[0]
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["user"]["display_name"] == person.name
    stored = stored_grant(stack.settings, person.sub)
    assert stored is not None and live_refresh_tokens(stack, person) == [stored[1].refresh_token]
    assert redis_sync.exists(f"{user_key}:tiktok:lease") == 0


@pytest.mark.parametrize("mode", ["latency", "http_500", "rate_limit", "garbage"])
def test_tiktok_api_failing_during_a_proxied_call(impatient: Stack, log_ids: list[str], mode: str) -> None:
    """The call itself fails (the grant is fresh): TikTok's own 4xx and 200 answers pass through as TikTok gave
    them; a silent or failing (5xx) TikTok is the broker's bounded 503; nothing about the grant changes."""
    stack = impatient
    person = sign_in(stack.broker.url, f"Api {mode}")
    before = stored_grant(stack.settings, person.sub)
    stack.tiktok.set_fault("user_info", mode, latency_ms=SLOW_MS, count=1)

    response, took = profile_call(stack, person)

    assert took < SLOW_MS / 1000
    if mode in ("latency", "http_500"):
        assert_broker_error(response, 503, "temporarily_unavailable", log_ids)
    else:  # the proxy's contract: TikTok's status and body, with X-Tt-Logid and Retry-After
        assert response.status_code == {"rate_limit": 429, "garbage": 200}[mode]
        assert response.headers["x-tt-logid"] == log_ids[-1]
    assert stored_grant(stack.settings, person.sub) == before
    assert not [c for c in stack.tiktok.calls if c["endpoint"] == "token" and c["grant_type"] == "refresh_token"]
    assert profile_call(stack, person)[0].status_code == 200


def test_tiktok_refusing_the_refresh_asks_for_a_new_login_which_restores_the_link(
        impatient: Stack, redis_sync: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    """invalid_grant is not an outage: the link ends once (401 login_required, no TikTok call loop), the broker
    session stays, and a new login links TikTok again."""
    stack = impatient
    caplog.set_level(logging.INFO)
    person = sign_in(stack.broker.url, "Refused Rae")
    age_grant(stack.settings, person.sub, time.time() - 1)
    open_id = ids.derived_open_id(stack.settings.tiktok_client_key, person.name)
    stack.tiktok.tokens.revoke_user(open_id)  # the user disconnected the app at TikTok

    for _ in range(3):
        response, _ = profile_call(stack, person)
        assert response.status_code == 401 and response.json()["error"] == "login_required"
    assert len([c for c in stack.tiktok.calls if c["grant_type"] == "refresh_token"]) == 1
    assert redis_sync.hget(f"broker:{{u:{person.sub}}}:user", "tiktok_link") == "broken"
    assert httpx.get(f"{stack.broker.url}/auth/verify", headers=person.cookie_header).status_code == 200

    again = sign_in(stack.broker.url, person.name)
    assert again.sub == person.sub
    assert redis_sync.hget(f"broker:{{u:{person.sub}}}:user", "tiktok_link") == "linked"
    assert profile_call(stack, again)[0].status_code == 200
