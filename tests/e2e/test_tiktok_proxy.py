"""The TikTok API proxy over a live stack: broker and emulator as real servers, a real Redis, a browser login."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio

from broker.clients import secret_digest
from broker.config import Settings
from broker.store.keys import KeySpace
from broker.store.tiktok_tokens import TikTokTokenStore
from broker.store.vault import Vault
from broker_sdk.tiktok import BrokerApiError, BrokerTikTok
from tests.e2e.conftest import ALICE, Stack, live_stack
from tests.e2e.test_login import log_in
from tests.support.browser import Browser

JOBS_SECRET = "jobs-secret-0123456789-abcdefghijklmnopqrst"
GATEWAY_SECRET = "gateway-secret-0123456789-abcdefghijklmnop"
PROFILE_FIELDS = "open_id,display_name,username"


@pytest.fixture
def clients_file(tmp_path: Path) -> Path:
    path = tmp_path / "clients.yaml"
    path.write_text(f"""
clients:
  - client_id: jobs
    client_secret_sha256: {secret_digest(JOBS_SECRET)}
    scopes: [tiktok.proxy]
  - client_id: gateway
    client_secret_sha256: {secret_digest(GATEWAY_SECRET)}
  - client_id: spa
    redirect_uris: ["https://app.example.com/cb"]
    scopes: [openid, tiktok.proxy]
""")
    return path


def running(base: Settings, clients_file: Path, **overrides: Any) -> Iterator[Stack]:
    with live_stack(base.with_overrides(clients_file=clients_file, **overrides)) as stack:
        yield stack


@pytest.fixture
def stack(base_settings: Settings, clients_file: Path) -> Iterator[Stack]:
    yield from running(base_settings, clients_file)


@pytest.fixture
def limited(base_settings: Settings, clients_file: Path) -> Iterator[Stack]:
    yield from running(base_settings, clients_file, tiktok_proxy_user_rate=3, tiktok_proxy_client_rate=2)


def signed_in(stack: Stack, browser: Browser) -> tuple[str, str]:
    """(access JWT, sub) of Alice after a browser login."""
    log_in(stack, browser)
    check = browser.client.get(f"{stack.broker.url}/auth/verify")
    assert check.status_code == 200
    return check.headers["authorization"].removeprefix("Bearer "), check.headers["x-auth-request-user"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def user_info(stack: Stack, headers: dict[str, str], fields: str = PROFILE_FIELDS) -> httpx.Response:
    return httpx.get(f"{stack.broker.url}/tiktok/v2/user/info/", params={"fields": fields}, headers=headers)


def tiktok_tokens(stack: Stack) -> list[str]:
    return [t.token for t in stack.tiktok.issued_tokens_for(ALICE)]


def calls(stack: Stack, endpoint: str) -> list[dict[str, Any]]:
    return [c for c in stack.tiktok.calls if c["endpoint"] == endpoint]


def refreshes(stack: Stack) -> list[dict[str, Any]]:
    return [c for c in calls(stack, "token") if c["grant_type"] == "refresh_token"]


def assert_no_tiktok_token(stack: Stack, response: httpx.Response) -> None:
    exposed = response.text + "".join(f"{k}:{v}" for k, v in response.headers.items())
    for token in tiktok_tokens(stack):
        assert token not in exposed


def expire_stored_grant(stack: Stack, user_id: str) -> None:
    """Make the broker's stored TikTok access token look expired (and expire it at the emulator too)."""
    async def rewrite() -> None:
        client = redis.asyncio.Redis.from_url(stack.settings.redis_url.reveal(), decode_responses=True)
        try:
            store = TikTokTokenStore(client, KeySpace(stack.settings.redis_prefix), Vault(stack.settings.vault_keys))
            current = await store.get(user_id)
            assert current is not None
            stack.tiktok.expire_access_token(current.tokens.access_token)
            expired = replace(current.tokens, expires_at=time.time() - 1)
            assert await store.compare_and_set(user_id, current.version, expired)
        finally:
            await client.aclose()
    asyncio.run(rewrite())


def test_a_service_reads_the_profile_and_never_sees_the_tiktok_token(stack: Stack, browser: Browser) -> None:
    token, _ = signed_in(stack, browser)
    response = user_info(stack, {**bearer(token), "Cookie": "x=1", "Connection": "keep-alive, X-Secret",
                                 "X-Secret": "hop"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["data"]["user"] == {"open_id": ALICE, "display_name": "Mara Example",
                                    "username": body["data"]["user"]["username"]}
    assert body["error"]["code"] == "ok" and body["error"]["log_id"]
    assert response.headers["x-tt-logid"] == body["error"]["log_id"]
    # TikTok saw the user's TikTok access token (not the broker JWT) ...
    seen = calls(stack, "user_info")[-1]["token"]
    assert seen in tiktok_tokens(stack) and seen.startswith("act.") and seen != token
    # ... and nothing the service got back contains any TikTok token.
    assert_no_tiktok_token(stack, response)
    assert "set-cookie" not in response.headers


def test_only_allowlisted_paths_are_forwarded(stack: Stack, browser: Browser) -> None:
    token, _ = signed_in(stack, browser)
    before = len(stack.tiktok.calls)
    for path in ("v2/oauth/token/", "v2/user/info", "v2/user/info/../../oauth/revoke/", "v2/user/info/x"):
        response = httpx.post(f"{stack.broker.url}/tiktok/{path}", headers=bearer(token))
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"
    assert len(stack.tiktok.calls) == before


def test_a_missing_scope_is_refused_by_name_before_tiktok(stack: Stack, browser: Browser) -> None:
    token, _ = signed_in(stack, browser)  # granted basic + profile, not stats nor video.list
    before = len(stack.tiktok.calls)
    response = user_info(stack, bearer(token), "open_id,follower_count")
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    assert "user.info.stats" in response.json()["error_description"]
    videos = httpx.post(f"{stack.broker.url}/tiktok/v2/video/list/", params={"fields": "id"},
                        json={"max_count": 5}, headers=bearer(token))
    assert videos.status_code == 403 and "video.list" in videos.json()["error_description"]
    assert len(stack.tiktok.calls) == before


def test_an_expired_grant_is_refreshed_once_before_the_call(stack: Stack, browser: Browser) -> None:
    token, sub = signed_in(stack, browser)
    expire_stored_grant(stack, sub)
    assert user_info(stack, bearer(token)).status_code == 200
    assert user_info(stack, bearer(token)).status_code == 200
    assert len(refreshes(stack)) == 1
    assert [c["status"] for c in calls(stack, "user_info")] == [200, 200, 200]  # login, then our two calls


def test_access_token_invalid_costs_one_refresh_and_one_retry(stack: Stack, browser: Browser) -> None:
    token, _ = signed_in(stack, browser)
    stack.tiktok.expire_access_token(calls(stack, "user_info")[-1]["token"])  # TikTok drops it; we don't know
    response = user_info(stack, bearer(token))
    assert response.status_code == 200, response.text
    assert len(refreshes(stack)) == 1
    assert [c["status"] for c in calls(stack, "user_info")][1:] == [401, 200]
    assert_no_tiktok_token(stack, response)


def test_still_invalid_after_the_refresh_tells_the_caller_to_log_in_again(
        stack: Stack, browser: Browser, monkeypatch: pytest.MonkeyPatch) -> None:
    token, _ = signed_in(stack, browser)
    monkeypatch.setattr(stack.tiktok.tokens, "access", lambda presented: None)  # every access token refused
    response = user_info(stack, bearer(token))
    assert response.status_code == 401
    assert response.json()["error"] == "login_required"
    assert "log in again" in response.json()["error_description"]
    assert len(refreshes(stack)) == 1
    assert [c["error"] for c in calls(stack, "user_info")][1:] == ["access_token_invalid"] * 2


def test_revoked_tokens_and_deleted_users_are_refused(stack: Stack, browser: Browser) -> None:
    token, _ = signed_in(stack, browser)
    revoked = httpx.post(f"{stack.broker.url}/oauth/revoke", data={"token": token})
    assert revoked.status_code == 200
    assert user_info(stack, bearer(token)).status_code == 401
    fresh = browser.client.get(f"{stack.broker.url}/auth/verify").headers["authorization"].removeprefix("Bearer ")
    assert user_info(stack, bearer(fresh)).status_code == 200
    deleted = httpx.delete(f"{stack.broker.url}/account", headers=bearer(fresh))
    assert deleted.status_code == 200, deleted.text
    before = len(calls(stack, "user_info"))
    response = user_info(stack, bearer(fresh))
    assert response.status_code == 401 and response.json()["error"] == "invalid_token"
    assert len(calls(stack, "user_info")) == before


def test_service_credential_with_subject(stack: Stack, browser: Browser) -> None:
    _, sub = signed_in(stack, browser)
    ok = user_info(stack, {"Authorization": basic("jobs", JOBS_SECRET), "X-Broker-Subject": sub})
    assert ok.status_code == 200, ok.text
    assert ok.json()["data"]["user"]["open_id"] == ALICE
    assert_no_tiktok_token(stack, ok)
    before = len(stack.tiktok.calls)
    for headers, status, error in (
            ({"Authorization": basic("jobs", "wrong"), "X-Broker-Subject": sub}, 401, "invalid_client"),
            ({"Authorization": basic("spa", ""), "X-Broker-Subject": sub}, 401, "invalid_client"),
            ({"Authorization": basic("gateway", GATEWAY_SECRET), "X-Broker-Subject": sub}, 403,
             "insufficient_scope"),
            ({"Authorization": basic("jobs", JOBS_SECRET)}, 400, "invalid_request"),
            ({"Authorization": basic("jobs", JOBS_SECRET), "X-Broker-Subject": "A" * 22}, 401, "login_required"),
            ({}, 401, "invalid_token")):
        response = user_info(stack, headers)
        assert (response.status_code, response.json()["error"]) == (status, error), headers
    assert len(stack.tiktok.calls) == before


def test_tiktok_rate_limit_passes_through_with_retry_after(stack: Stack, browser: Browser) -> None:
    token, _ = signed_in(stack, browser)
    stack.tiktok.set_fault("user_info", "rate_limit", count=1)
    response = user_info(stack, bearer(token))
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limit_exceeded" and response.json()["error"]["log_id"]
    assert int(response.headers["retry-after"]) > 0


def test_tiktok_failing_is_a_503_to_retry_never_a_500_of_ours(stack: Stack, browser: Browser) -> None:
    token, _ = signed_in(stack, browser)
    stack.tiktok.set_fault("user_info", "http_500", count=1)
    response = user_info(stack, bearer(token))
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "temporarily_unavailable" and int(response.headers["retry-after"]) > 0
    assert "log_id" not in response.text  # TikTok's log_id is in our log, not in the answer
    assert user_info(stack, bearer(token)).status_code == 200  # the next call goes through


def test_our_rate_limits_per_client_and_per_user(limited: Stack, browser: Browser) -> None:
    token, sub = signed_in(limited, browser)
    assert [user_info(limited, bearer(token)).status_code for _ in range(2)] == [200, 200]
    refused = user_info(limited, bearer(token))
    assert refused.status_code == 429 and refused.json()["error"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    service = {"Authorization": basic("jobs", JOBS_SECRET), "X-Broker-Subject": sub}
    assert user_info(limited, service).status_code == 200  # another client: its own share ...
    assert user_info(limited, service).status_code == 429  # ... until the user's total runs out
    assert len(calls(limited, "user_info")) == 1 + 3  # the login's call and the three allowed


def test_concurrent_calls_on_an_expiring_grant_refresh_once(stack: Stack, browser: Browser) -> None:
    token, sub = signed_in(stack, browser)
    expire_stored_grant(stack, sub)

    async def burst() -> list[int]:
        async with httpx.AsyncClient() as client:
            answers = await asyncio.gather(*(
                client.get(f"{stack.broker.url}/tiktok/v2/user/info/", params={"fields": "open_id"},
                           headers=bearer(token)) for _ in range(12)))
        return [a.status_code for a in answers]

    assert asyncio.run(burst()) == [200] * 12
    assert len(refreshes(stack)) == 1
    # The newest refresh token was kept: the next expiry refreshes again without a sign-in.
    expire_stored_grant(stack, sub)
    assert user_info(stack, bearer(token)).status_code == 200
    assert len(refreshes(stack)) == 2 and all(c["status"] == 200 and not c["error"] for c in refreshes(stack))


def test_the_python_client_against_the_live_stack(stack: Stack, browser: Browser) -> None:
    token, sub = signed_in(stack, browser)

    async def use() -> None:
        async with BrokerTikTok(stack.broker.url, token=token) as tiktok:
            data = await tiktok.get("/v2/user/info/", fields=["open_id", "display_name"])
            assert data["user"] == {"open_id": ALICE, "display_name": "Mara Example"}
            with pytest.raises(BrokerApiError) as refused:
                await tiktok.get("/v2/user/info/", fields=["follower_count"])
            assert refused.value.status == 403 and "user.info.stats" in refused.value.message
        async with BrokerTikTok(stack.broker.url, client_id="jobs", client_secret=JOBS_SECRET,
                                subject=sub) as job:
            assert (await job.get("/v2/user/info/", fields=["open_id"]))["user"]["open_id"] == ALICE

    asyncio.run(use())
    assert calls(stack, "user_info")[-1]["token"] in tiktok_tokens(stack)


def test_videos_are_forwarded_when_the_user_granted_video_list(base_settings: Settings, clients_file: Path,
                                                                 browser: Browser,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # start_stack asks for basic + profile; this stack also asks for video.list, and the user grants it.
    wanted = ("user.info.basic", "user.info.profile", "video.list")
    original = Settings.with_overrides
    monkeypatch.setattr(Settings, "with_overrides",
                        lambda self, **changes: original(self, **{**changes, "tiktok_scopes": wanted}))
    monkeypatch.setattr("tests.e2e.test_login.BASIC_AND_PROFILE", wanted)
    for stack in running(base_settings, clients_file):
        token, _ = signed_in(stack, browser)
        listed = httpx.post(f"{stack.broker.url}/tiktok/v2/video/list/", params={"fields": "id,title"},
                            json={"max_count": 2}, headers=bearer(token))
        assert listed.status_code == 200, listed.text
        assert listed.json()["error"]["code"] == "ok"
        assert calls(stack, "video_list")[-1]["token"] in tiktok_tokens(stack)
        assert_no_tiktok_token(stack, listed)


def test_a_path_the_operator_adds_needs_the_scopes_it_declares(base_settings: Settings, clients_file: Path,
                                                               browser: Browser) -> None:
    # Alice granted basic and profile; one added path asks for a research scope, and user info for profile too.
    paths = ("/v2/user/info/=user.info.profile", "/v2/research/video/query/=research.data.basic")
    for stack in running(base_settings, clients_file, tiktok_proxy_paths=paths):
        token, _ = signed_in(stack, browser)
        before = len(stack.tiktok.calls)
        research = httpx.post(f"{stack.broker.url}/tiktok/v2/research/video/query/", json={"query": {}},
                              headers=bearer(token))
        assert research.status_code == 403, research.text
        assert "research.data.basic" in research.json()["error_description"]
        assert len(stack.tiktok.calls) == before  # refused before TikTok or the user's grant is touched
        # Only the default basic field is asked for, yet the declared profile scope is needed too: Alice has it.
        assert user_info(stack, bearer(token), "open_id").status_code == 200
        assert httpx.post(f"{stack.broker.url}/tiktok/v2/video/list/", headers=bearer(token)).status_code == 404
