"""Log in with TikTok end to end: broker and emulator as real servers on loopback, a real Redis, a browser."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import jwt
import pytest
import redis

from broker.config import Settings
from tests.e2e.conftest import ALICE, Stack, start_stack
from tests.support.browser import Browser, query_of
from tests.support.log_ids import record_log_ids

BASIC_AND_PROFILE = ("user.info.basic", "user.info.profile")


def user_keys(redis_sync: redis.Redis) -> list[str]:
    """Everything a login writes: the open_id index and keys inside users' slots."""
    return sorted(redis_sync.keys("broker:oid:*") + redis_sync.keys("broker:{u:*"))


def log_in(stack: Stack, browser: Browser, *, return_to: str = "/", user: str = ALICE):
    consent = browser.get(f"{stack.broker.url}/login?return_to={return_to}")
    if consent.url.port == stack.broker.port or consent.is_redirect:
        return consent  # TikTok skipped its consent page: this user already authorized the app
    assert consent.status_code == 200, consent.text
    return browser.consent(consent, user=user, scopes=BASIC_AND_PROFILE)


def test_a_newcomer_logs_in_and_the_gateway_sees_them(stack: Stack, browser: Browser,
                                                       redis_sync: redis.Redis) -> None:
    home = log_in(stack, browser)
    assert home.status_code == 200
    assert home.url == f"{stack.broker.url}/"
    assert "You are signed in with TikTok" in home.text
    assert "Mara Example" in home.text  # the seeded test user's display name, from TikTok's user info

    cookie = next(c for c in browser.client.cookies.jar if c.name == "broker_session")
    assert len(f"{cookie.name}={cookie.value}") < 200
    set_cookie = next(r for r in browser.history if "broker_session=" in r.headers.get("set-cookie", ""))
    flags = set_cookie.headers["set-cookie"].lower()
    assert "httponly" in flags and "samesite=lax" in flags and "path=/" in flags

    check = browser.client.get(f"{stack.broker.url}/auth/verify")
    assert check.status_code == 200
    token = check.headers["authorization"].removeprefix("Bearer ")
    signing_key = jwt.PyJWKClient(f"{stack.broker.url}/.well-known/jwks.json").get_signing_key_from_jwt(token)
    claims = jwt.decode(token, signing_key.key, algorithms=["ES256"], audience=stack.settings.token_audience,
                        issuer=stack.settings.issuer)
    assert claims["tiktok_open_id"] == ALICE == check.headers["x-auth-request-open-id"]
    assert claims["sub"] == check.headers["x-auth-request-user"] != ALICE
    assert claims["name"] == "Mara Example"
    assert set(claims["scope"].split()) == set(BASIC_AND_PROFILE)
    assert claims["exp"] - claims["iat"] == stack.settings.access_token_ttl

    # The session's JWT is reused (no signature, no Redis write) until 80% of its life.
    again = browser.client.get(f"{stack.broker.url}/auth/verify")
    assert again.headers["authorization"] == check.headers["authorization"]
    # The gateway check never calls TikTok.
    assert not [c for c in stack.tiktok.calls if c["endpoint"] in ("token", "user_info")][2:]

    # The profile is stored under the broker user id, keyed by open_id through the index.
    profile = redis_sync.hgetall(f"broker:{{u:{claims['sub']}}}:user")
    assert profile["open_id"] == ALICE and profile["display_name"] == "Mara Example"
    assert profile["username"]  # granted user.info.profile


def test_redis_holds_no_tiktok_token_in_clear(stack: Stack, browser: Browser, redis_sync: redis.Redis) -> None:
    log_in(stack, browser)
    issued = [t.token for t in stack.tiktok.issued_tokens_for(ALICE)]
    assert any(t.startswith("act.") for t in issued) and any(t.startswith("rft.") for t in issued)
    for key in redis_sync.keys("*"):
        dumped = redis_sync.dump(key) or b""
        for token in issued:
            assert token.encode() not in dumped, key
    session_cookie = browser.client.cookies["broker_session"]
    secret = session_cookie.split(".")[1]
    assert not any(secret.encode() in (redis_sync.dump(k) or b"") or secret in k for k in redis_sync.keys("*"))


def test_logging_in_twice_keeps_one_user_and_two_sessions(stack: Stack, redis_sync: redis.Redis) -> None:
    subs = []
    for _ in range(2):
        person = Browser()
        log_in(stack, person)
        subs.append(person.client.get(f"{stack.broker.url}/auth/verify").headers["x-auth-request-user"])
        person.close()
    assert subs[0] == subs[1]
    assert redis_sync.zcard(f"broker:{{u:{subs[0]}}}:sessions") == 2


def test_an_allowlisted_return_url_is_where_the_browser_lands(stack: Stack, browser: Browser) -> None:
    final = log_in(stack, browser, return_to="https://app.example.com/after?x=1")
    assert final.status_code == 303
    assert final.headers["location"] == "https://app.example.com/after?x=1"


def test_parallel_logins_in_two_tabs_both_complete(stack: Stack, browser: Browser) -> None:
    tab_one = browser.get(f"{stack.broker.url}/login")
    tab_two = browser.get(f"{stack.broker.url}/login")
    assert browser.consent(tab_two, user=ALICE).status_code == 200
    assert browser.consent(tab_one, user=ALICE).status_code == 200


# Negative cases: each asserts the status, the error code, and that nothing was written.


def stop_before_callback(stack: Stack, browser: Browser) -> str:
    """Run the login up to TikTok's redirect back, and return the callback URL without visiting it."""
    consent = browser.get(f"{stack.broker.url}/login")
    redirect = browser.consent(consent, user=ALICE, follow=False)
    assert redirect.status_code == 302
    return redirect.headers["location"]


def assert_error_page(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert "text/html" in response.headers["content-type"]
    assert f"<code>{code}</code>" in response.text
    assert "Traceback" not in response.text
    assert "broker_session" not in response.headers.get("set-cookie", "")


def test_a_replayed_callback_is_refused(stack: Stack, browser: Browser, redis_sync: redis.Redis) -> None:
    callback = stop_before_callback(stack, browser)
    assert browser.get(callback).status_code == 200
    written = user_keys(redis_sync)
    token_calls = len([c for c in stack.tiktok.calls if c["endpoint"] == "token"])
    assert_error_page(browser.get(callback), 400, "invalid_request")
    assert user_keys(redis_sync) == written
    assert len([c for c in stack.tiktok.calls if c["endpoint"] == "token"]) == token_calls  # code never resent


def test_a_callback_without_the_binding_cookie_is_refused(stack: Stack, browser: Browser,
                                                          redis_sync: redis.Redis) -> None:
    callback = stop_before_callback(stack, browser)
    stranger = Browser()
    assert_error_page(stranger.get(callback), 400, "invalid_request")
    stranger.close()
    assert user_keys(redis_sync) == []
    # The state was spent by the failed attempt: the rightful browser cannot be raced into a second use.
    assert_error_page(browser.get(callback), 400, "invalid_request")


def test_a_callback_with_a_foreign_binding_cookie_is_refused(stack: Stack, browser: Browser,
                                                             redis_sync: redis.Redis) -> None:
    victim_callback = stop_before_callback(stack, browser)
    attacker = Browser()
    attacker.get(f"{stack.broker.url}/login")  # gets a binding cookie of its own
    assert attacker.client.cookies.get("broker_login")
    assert_error_page(attacker.get(victim_callback), 400, "invalid_request")
    attacker.close()
    assert user_keys(redis_sync) == []


def test_a_callback_with_unknown_state_or_no_state_is_refused(stack: Stack, browser: Browser,
                                                              redis_sync: redis.Redis) -> None:
    browser.get(f"{stack.broker.url}/login")
    for query in ("", "?code=abc", "?state=forged&code=abc", "?state=" + "x" * 300 + "&code=abc"):
        assert_error_page(browser.get(f"{stack.broker.url}/callback{query}"), 400, "invalid_request")
    assert user_keys(redis_sync) == []


def test_an_expired_login_attempt_is_refused(stack: Stack, browser: Browser, redis_sync: redis.Redis) -> None:
    callback = stop_before_callback(stack, browser)
    (attempt_key,) = redis_sync.keys("broker:login:*")
    assert 590 <= redis_sync.ttl(attempt_key) <= 600  # ten minutes
    redis_sync.delete(attempt_key)  # what expiry does
    assert_error_page(browser.get(callback), 400, "invalid_request")
    assert user_keys(redis_sync) == []


def test_a_pkce_mismatch_fails_at_tiktok_and_writes_nothing(stack: Stack, browser: Browser,
                                                             redis_sync: redis.Redis) -> None:
    callback = stop_before_callback(stack, browser)
    (attempt_key,) = redis_sync.keys("broker:login:*")
    attempt = json.loads(redis_sync.get(attempt_key))
    attempt["code_verifier"] = "x" * 64
    redis_sync.set(attempt_key, json.dumps(attempt), keepttl=True)
    assert_error_page(browser.get(callback), 502, "upstream_error")
    assert stack.tiktok.calls[-1]["error"] == "invalid_request"
    assert user_keys(redis_sync) == []


def test_denying_at_tiktok_shows_a_friendly_page(stack: Stack, browser: Browser, redis_sync: redis.Redis) -> None:
    consent = browser.get(f"{stack.broker.url}/login")
    page = browser.consent(consent, action="deny")
    assert_error_page(page, 403, "access_denied")
    assert "cancelled" in page.text
    assert user_keys(redis_sync) == []


def test_an_unregistered_redirect_uri_stops_at_tiktok(base_settings: Settings, browser: Browser,
                                                      redis_sync: redis.Redis) -> None:
    running, servers = start_stack(base_settings, redirect_uris=("https://elsewhere.example.com/callback",))
    try:
        page = browser.get(f"{running.broker.url}/login")
        assert page.status_code == 400 and page.url.port == running.emulator.port
        assert "redirect_uri" in page.text
        assert user_keys(redis_sync) == []
    finally:
        for server in servers:
            server.stop()


@pytest.mark.parametrize("return_to", ["https://evil.example.com/", "//evil.example.com", "/\\evil.example.com",
                                       "https://app.example.com@evil.example.com/", "javascript:alert(1)"])
def test_login_refuses_open_redirects_before_anything_is_stored(stack: Stack, browser: Browser,
                                                                redis_sync: redis.Redis, return_to: str) -> None:
    from urllib.parse import quote

    response = browser.get(f"{stack.broker.url}/login?return_to={quote(return_to, safe='')}")
    assert_error_page(response, 400, "invalid_request")
    assert redis_sync.keys("broker:login:*") == []
    assert "location" not in response.headers


FAULTS = [
    ("token", "http_500", 503, "temporarily_unavailable"),
    ("token", "error_200", 503, "temporarily_unavailable"),
    ("token", "garbage", 502, "upstream_error"),
    ("token", "rate_limit", 503, "temporarily_unavailable"),
    ("token", "latency", 503, "temporarily_unavailable"),
    ("user_info", "http_500", 503, "temporarily_unavailable"),
    ("user_info", "error_200", 503, "temporarily_unavailable"),
    ("user_info", "garbage", 502, "upstream_error"),
    ("user_info", "rate_limit", 503, "temporarily_unavailable"),
    ("user_info", "latency", 503, "temporarily_unavailable"),
]


SLOW_MS = 2000  # a latency fault's silence: four times the broker's TikTok timeout below


@pytest.fixture
def impatient_stack(base_settings: Settings) -> Iterator[Stack]:
    running, servers = start_stack(base_settings.with_overrides(tiktok_timeout=0.5))
    yield running
    for server in servers:
        server.stop()


@pytest.mark.parametrize(("endpoint", "mode", "status", "code"), FAULTS)
def test_tiktok_failing_during_login_gives_a_clear_error_and_writes_nothing(
        impatient_stack: Stack, browser: Browser, redis_sync: redis.Redis, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, endpoint: str, mode: str, status: int, code: str) -> None:
    callback = stop_before_callback(impatient_stack, browser)
    log_ids = record_log_ids(monkeypatch)
    impatient_stack.tiktok.set_fault(endpoint, mode, latency_ms=SLOW_MS, count=1)
    started = time.monotonic()
    response = browser.get(callback)
    assert time.monotonic() - started < SLOW_MS / 1000  # the broker's TikTok timeout answered, not TikTok
    assert_error_page(response, status, code)
    if status == 503:
        assert response.headers["retry-after"]
    # TikTok's log_id is for the operator's log, never for the page.
    assert not [log_id for log_id in log_ids if log_id in response.text]
    if mode != "latency":
        assert log_ids[-1] in caplog.text
    assert user_keys(redis_sync) == []
    # A fresh login works again once TikTok recovers.
    assert log_in(impatient_stack, browser).status_code == 200


def test_the_callback_state_is_in_the_authorize_url_and_pkce_is_hex(stack: Stack, browser: Browser) -> None:
    redirect = browser.get(f"{stack.broker.url}/login", follow=False)
    params = query_of(redirect.headers["location"])
    assert params["client_key"] == "emulator-client-key"
    assert params["redirect_uri"] == f"{stack.broker.url}/callback"
    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) == 64 and int(params["code_challenge"], 16) >= 0
    assert params["scope"] == "user.info.basic,user.info.profile"
    assert len(params["state"]) >= 43
