"""Logout, ending sessions, deletion and TikTok's deauthorization webhook, in process with a frozen clock."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest
import redis

from broker.config import Settings
from broker.flows.tokens import SESSION_GRANT
from tests.support.inprocess import ALICE, InProcess, in_process

SAME_ORIGIN = {"Origin": "http://127.0.0.1:8080"}


@pytest.fixture
async def stack(base_settings: Settings) -> AsyncIterator[InProcess]:
    async with in_process(base_settings) as running:
        await running.sign_in()
        yield running


def calls(stack: InProcess, endpoint: str) -> list[dict[str, object]]:
    return [c for c in stack.emulator.state.emulator.calls if c["endpoint"] == endpoint]


async def second_browser(stack: InProcess) -> InProcess:
    other = httpx.AsyncClient(transport=stack.broker._transport, base_url=stack.settings.issuer)
    twin = InProcess(other, stack.tiktok, stack.clock, stack.settings, stack.app, stack.emulator)
    await twin.sign_in()
    return twin


async def verify(client: httpx.AsyncClient, bearer: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return (await client.get("/auth/verify", headers=headers)).status_code


async def test_logout_ends_the_session_its_families_and_the_tiktok_grant(stack: InProcess) -> None:
    pair = (await stack.broker.post("/oauth/token", data={"grant_type": SESSION_GRANT}, headers=SAME_ORIGIN)).json()
    jwt_before = (await stack.broker.get("/auth/verify")).headers["authorization"].removeprefix("Bearer ")
    response = await stack.broker.post("/logout", headers=SAME_ORIGIN)
    assert response.status_code == 303 and response.headers["location"] == "http://127.0.0.1:8080/"
    assert 'broker_session=""' in response.headers["set-cookie"] or "Max-Age=0" in response.headers["set-cookie"]
    assert await verify(stack.broker) == 401
    assert await verify(stack.broker, jwt_before) == 401  # its sid is gone: denied at once
    assert await verify(stack.broker, pair["access_token"]) == 401  # the family started from it too
    refreshed = await stack.broker.post("/oauth/token", data={"grant_type": "refresh_token",
                                                              "refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 400
    assert len(calls(stack, "revoke")) == 1  # it was the last session: TikTok was told


async def test_logout_keeps_tiktok_while_another_session_lives_and_everywhere_ends_all(stack: InProcess) -> None:
    other = await second_browser(stack)
    await stack.broker.post("/logout", headers=SAME_ORIGIN)
    assert await verify(other.broker) == 200
    assert calls(stack, "revoke") == []
    await other.sign_in()  # a third session in the second browser
    assert (await other.broker.post("/logout", data={"everywhere": "true"}, headers=SAME_ORIGIN)).status_code == 303
    assert len(calls(stack, "revoke")) == 1
    await other.broker.aclose()


async def test_logout_is_csrf_safe_quiet_when_gone_and_redirects_only_to_allowlisted_urls(stack: InProcess) -> None:
    cross = await stack.broker.post("/logout", headers={"Origin": "https://evil.example.com"})
    assert cross.status_code == 403 and await verify(stack.broker) == 200
    no_origin = await stack.broker.post("/logout")
    assert no_origin.status_code == 403 and await verify(stack.broker) == 200
    assert "Request refused" in no_origin.text
    hidden_cross = await stack.broker.post("/logout", headers={"Origin": "null", "Sec-Fetch-Site": "cross-site"})
    assert hidden_cross.status_code == 403 and await verify(stack.broker) == 200
    evil = await stack.broker.post("/logout", data={"return_to": "https://evil.example.com/"}, headers=SAME_ORIGIN)
    assert evil.status_code == 400 and await verify(stack.broker) == 200
    good = await stack.broker.post("/logout", data={"post_logout_redirect_uri": "https://app.example.com/bye"},
                                   headers=SAME_ORIGIN)
    assert good.status_code == 303 and good.headers["location"] == "https://app.example.com/bye"
    again = await stack.broker.post("/logout", headers=SAME_ORIGIN)  # already gone: quietly fine
    assert again.status_code == 303


async def test_bearer_logout_answers_json(stack: InProcess) -> None:
    pair = (await stack.broker.post("/oauth/token", data={"grant_type": SESSION_GRANT}, headers=SAME_ORIGIN)).json()
    response = await stack.broker.post("/logout", headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert response.status_code == 200 and response.json()["ended"] == 1
    assert await verify(stack.broker, pair["access_token"]) == 401
    assert await verify(stack.broker) == 200  # the browser session that started the family lives on


async def test_tiktok_failing_during_logout_queues_the_revoke_and_a_retry_completes_it(stack: InProcess) -> None:
    stack.emulator.state.emulator.set_fault("revoke", "http_500", count=1)
    response = await stack.broker.post("/logout", headers=SAME_ORIGIN)
    assert response.status_code == 303 and await verify(stack.broker) == 401  # the local logout completed
    services = stack.app.state.services
    assert await services.revoker.queue.backlog() == 1
    metrics = (await stack.broker.get("/metrics")).text
    assert "broker_tiktok_revoke_failures_total 1.0" in metrics
    stack.clock.advance(60)
    assert await services.revoker.retry_due() == 1
    assert await services.revoker.queue.backlog() == 0
    revokes = calls(stack, "revoke")
    assert [c["status"] for c in revokes] == [500, 200]
    access_tokens = [t.token for t in stack.emulator.state.emulator.issued_tokens_for(ALICE) if t.kind == "access"]
    assert revokes[-1]["token"] in access_tokens


async def test_the_account_page_lists_sessions_and_ends_another_one(stack: InProcess) -> None:
    other = await second_browser(stack)
    page = await stack.broker.get("/account")
    assert page.status_code == 200 and "Mara Example" in page.text and "user.info.basic" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    sids = re.findall(r'name="sid" value="([^"]+)"', page.text)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert len(sids) == 1 and token  # the other browser's session has an End button; this one does not
    forged = await stack.broker.post("/account/sessions/end", data={"sid": sids[0], "csrf_token": "x"},
                                     headers=SAME_ORIGIN)
    assert forged.status_code == 400 and await verify(other.broker) == 200
    ended = await stack.broker.post("/account/sessions/end", data={"sid": sids[0], "csrf_token": token.group(1)},
                                    headers=SAME_ORIGIN)
    assert ended.status_code == 303
    assert await verify(other.broker) == 401 and await verify(stack.broker) == 200
    await other.broker.aclose()


async def test_the_account_page_sends_strangers_to_login(stack: InProcess) -> None:
    stack.broker.cookies.clear()
    response = await stack.broker.get("/account")
    assert response.status_code == 303 and "/login?return_to=/account" in response.headers["location"]


def signed(secret: str, body: bytes, t: int) -> dict[str, str]:
    signature = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return {"TikTok-Signature": f"t={t},s={signature}", "Content-Type": "application/json"}


def removal(reason: int = 1, create_time: int = 1_800_000_000, client_key: str = "emulator-client-key") -> bytes:
    return json.dumps({"client_key": client_key, "event": "authorization.removed", "create_time": create_time,
                       "user_openid": ALICE, "content": json.dumps({"reason": reason})}).encode()


async def test_tiktok_deauthorization_ends_every_session_and_drops_the_grant(stack: InProcess,
                                                                             redis_sync: redis.Redis) -> None:
    body, now = removal(reason=1), int(stack.clock.now())
    secret = stack.settings.tiktok_client_secret.reveal()
    response = await stack.broker.post("/webhooks/tiktok", content=body, headers=signed(secret, body, now))
    assert response.status_code == 200 and response.json() == {"status": "processed"}
    assert await verify(stack.broker) == 401
    sub = redis_sync.get(next(iter(redis_sync.keys("broker:oid:*"))))
    assert redis_sync.exists(f"broker:{{u:{sub}}}:tiktok") == 0
    user = redis_sync.hgetall(f"broker:{{u:{sub}}}:user")
    assert user["tiktok_link"] == "broken" and user["tiktok_link_reason"] == "tiktok_deauthorized:user_disconnected"
    replay = await stack.broker.post("/webhooks/tiktok", content=body, headers=signed(secret, body, now))
    assert replay.status_code == 200 and replay.json() == {"status": "duplicate"}
    account = await stack.broker.get("/account")
    assert account.status_code == 303  # signed out everywhere


@pytest.mark.parametrize("case", ["wrong secret", "stale", "future", "no header", "garbled header", "bad hex",
                                  "tampered body"])
async def test_bad_webhook_signatures_are_401_and_change_nothing(stack: InProcess, case: str) -> None:
    body, now = removal(), int(stack.clock.now())
    secret = stack.settings.tiktok_client_secret.reveal()
    headers = {
        "wrong secret": signed("not-the-secret", body, now),
        "stale": signed(secret, body, now - 301),
        "future": signed(secret, body, now + 301),
        "no header": {"Content-Type": "application/json"},
        "garbled header": {"TikTok-Signature": "s=abc;t=1"},
        "bad hex": {"TikTok-Signature": f"t={now},s={'z' * 64}"},
        "tampered body": signed(secret, body.replace(b'"reason\\": 1', b'"reason\\": 2'), now),
    }[case]
    response = await stack.broker.post("/webhooks/tiktok", content=body, headers=headers)
    assert response.status_code == 401 and response.json()["error"] == "invalid_signature"
    assert await verify(stack.broker) == 200


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"event": "authorization.removed"}',
                                  removal().replace(b'\\"reason\\": 1', b'\\"reason\\": \\"x\\"')])
async def test_malformed_webhook_bodies_are_400(stack: InProcess, body: bytes) -> None:
    secret = stack.settings.tiktok_client_secret.reveal()
    response = await stack.broker.post("/webhooks/tiktok", content=body,
                                       headers=signed(secret, body, int(stack.clock.now())))
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    assert await verify(stack.broker) == 200
