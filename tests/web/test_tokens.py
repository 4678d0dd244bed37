"""Broker refresh tokens, revocation and introspection, against a real Redis with a frozen clock."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from broker.clients import secret_digest
from broker.config import Settings
from broker.flows.tokens import SESSION_GRANT
from tests.support.inprocess import InProcess, in_process

GATEWAY_SECRET = "gateway-secret-0123456789-abcdefghijklmnop"
ORIGIN = {"Origin": "http://127.0.0.1:8080"}


@pytest.fixture
def clients_file(tmp_path: Path) -> Path:
    path = tmp_path / "clients.yaml"
    path.write_text(f"""
clients:
  - client_id: gateway
    client_secret_sha256: {secret_digest(GATEWAY_SECRET)}
    token_endpoint_auth_method: client_secret_basic
    first_party: true
    audience: http://127.0.0.1:8080                   # the gateway audience: it introspects session tokens
  - client_id: spa
    redirect_uris: ["https://app.example.com/cb"]
""")
    return path


@pytest.fixture
async def stack(base_settings: Settings, clients_file: Path) -> AsyncIterator[InProcess]:
    async with in_process(base_settings, clients_file=clients_file) as running:
        await running.sign_in()
        yield running


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


async def first_pair(stack: InProcess) -> dict[str, object]:
    response = await stack.broker.post("/oauth/token", data={"grant_type": SESSION_GRANT}, headers=ORIGIN)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    return dict(response.json())


async def refresh(stack: InProcess, token: object) -> httpx.Response:
    return await stack.broker.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": str(token)})


async def gateway_accepts(stack: InProcess, access_token: object) -> bool:
    async with httpx.AsyncClient(transport=stack.broker._transport, base_url=stack.settings.issuer) as fresh:
        response = await fresh.get("/auth/verify", headers={"Authorization": f"Bearer {access_token}"})
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


async def introspect(stack: InProcess, token: object) -> dict[str, object]:
    response = await stack.broker.post("/oauth/introspect", data={"token": str(token)},
                                       headers=basic("gateway", GATEWAY_SECRET))
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_a_signed_in_page_gets_a_first_pair_only_from_a_trusted_origin(stack: InProcess) -> None:
    pair = await first_pair(stack)
    assert pair["token_type"] == "Bearer" and str(pair["refresh_token"]).startswith("brt1.")
    assert pair["expires_in"] == stack.settings.access_token_ttl
    trusted = await stack.broker.post("/oauth/token", data={"grant_type": SESSION_GRANT},
                                      headers={"Origin": "https://app.example.com"})
    assert trusted.headers["access-control-allow-origin"] == "https://app.example.com"
    for headers in ({}, {"Origin": "https://evil.example.com"}, {"Origin": "null"}):
        refused = await stack.broker.post("/oauth/token", data={"grant_type": SESSION_GRANT}, headers=headers)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_request"
        assert "access-control-allow-origin" not in refused.headers
    stack.broker.cookies.clear()
    anonymous = await stack.broker.post("/oauth/token", data={"grant_type": SESSION_GRANT}, headers=ORIGIN)
    assert anonymous.status_code == 400 and anonymous.json()["error"] == "invalid_grant"


async def test_rotation_grace_window_and_reuse_detection(stack: InProcess) -> None:
    first = await first_pair(stack)
    second = (await refresh(stack, first["refresh_token"])).json()
    assert second["refresh_token"] != first["refresh_token"] and second["access_token"] != first["access_token"]

    stack.clock.advance(stack.settings.refresh_grace - 1)  # a parallel tab, late but inside the window
    again = (await refresh(stack, first["refresh_token"])).json()
    assert again == second

    stack.clock.advance(2)  # past the grace window: the old token is a leak
    reused = await refresh(stack, first["refresh_token"])
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    # The whole family ended: the newest refresh token and its access token are dead too.
    assert (await refresh(stack, second["refresh_token"])).status_code == 400
    assert not await gateway_accepts(stack, second["access_token"])
    assert (await introspect(stack, second["refresh_token"])) == {"active": False}
    # The browser session the family came from is a different session and stays signed in.
    assert (await stack.broker.get("/auth/verify")).status_code == 200


async def test_zero_grace_makes_any_second_use_a_reuse(base_settings: Settings, clients_file: Path) -> None:
    async with in_process(base_settings, clients_file=clients_file, refresh_grace=0) as running:
        await running.sign_in()
        first = await first_pair(running)
        second = (await refresh(running, first["refresh_token"])).json()
        assert (await refresh(running, first["refresh_token"])).status_code == 400
        assert (await refresh(running, second["refresh_token"])).status_code == 400


async def test_fifty_concurrent_refreshes_make_one_successor_and_no_logout(stack: InProcess,
                                                                          redis_sync: redis.Redis) -> None:
    first = await first_pair(stack)
    answers = await asyncio.gather(*(refresh(stack, first["refresh_token"]) for _ in range(50)))
    assert {r.status_code for r in answers} == {200}
    pairs = {(r.json()["access_token"], r.json()["refresh_token"]) for r in answers}
    assert len(pairs) == 1  # every caller got the same new pair
    (access, successor) = pairs.pop()
    sub = str(successor).split(".")[1]
    sid = str(successor).split(".")[2]
    family = redis_sync.hgetall(f"broker:{{u:{sub}}}:s:{sid}")
    assert family["rt"] == hashlib.sha256(str(successor).encode()).hexdigest()
    assert redis_sync.llen(f"broker:{{u:{sub}}}:rtu:{sid}") == 1  # exactly one rotation happened
    assert await gateway_accepts(stack, access)
    assert (await refresh(stack, successor)).status_code == 200


async def test_quick_rotations_keep_one_grace_entry_and_ending_the_family_leaves_none(
        stack: InProcess, redis_sync: redis.Redis) -> None:
    """Only the newest rotation can be replayed, so it is the only sealed pair kept; deletion and revocation
    find it through the family, and nothing of the family outlives it."""
    tokens = [str((await first_pair(stack))["refresh_token"])]
    for _ in range(3):  # three rotations inside one grace window
        tokens.append(str((await refresh(stack, tokens[-1])).json()["refresh_token"]))
    sub = tokens[0].split(".")[1]
    assert len(redis_sync.keys(f"broker:{{u:{sub}}}:rtg:*")) == 1
    replayed = await refresh(stack, tokens[-2])  # the parallel tab of the newest rotation still gets its pair
    assert replayed.status_code == 200 and replayed.json()["refresh_token"] == tokens[-1]
    assert (await stack.broker.post("/oauth/revoke", data={"token": tokens[-1]})).status_code == 200
    assert redis_sync.keys(f"broker:{{u:{sub}}}:rtg:*") == []


async def test_a_made_up_token_naming_a_family_does_not_revoke_it(stack: InProcess) -> None:
    first = await first_pair(stack)
    _, sub, sid, _ = str(first["refresh_token"]).split(".")
    forged = f"brt1.{sub}.{sid}.{'A' * 43}"
    assert (await refresh(stack, forged)).status_code == 400
    assert (await refresh(stack, first["refresh_token"])).status_code == 200


@pytest.mark.parametrize("token", ["", "garbage", "brt1.x.y.z", "a.b.c"])
async def test_garbage_refresh_tokens_are_invalid_grant(stack: InProcess, token: str) -> None:
    response = await refresh(stack, token)
    assert response.status_code == 400
    assert response.json()["error"] == ("invalid_request" if not token else "invalid_grant")


async def test_revoking_a_refresh_token_ends_the_family_at_once(stack: InProcess) -> None:
    pair = await first_pair(stack)
    assert (await introspect(stack, pair["refresh_token"]))["active"] is True
    assert await gateway_accepts(stack, pair["access_token"])
    response = await stack.broker.post("/oauth/revoke", data={"token": str(pair["refresh_token"])})
    assert response.status_code == 200
    assert not await gateway_accepts(stack, pair["access_token"])
    assert (await introspect(stack, pair["access_token"])) == {"active": False}
    assert (await introspect(stack, pair["refresh_token"])) == {"active": False}
    assert (await refresh(stack, pair["refresh_token"])).status_code == 400


async def test_revoking_an_access_token_denylists_only_that_jti(stack: InProcess) -> None:
    pair = await first_pair(stack)
    newer = (await refresh(stack, pair["refresh_token"])).json()
    assert (await stack.broker.post("/oauth/revoke", data={"token": str(pair["access_token"])})).status_code == 200
    assert not await gateway_accepts(stack, pair["access_token"])
    assert (await introspect(stack, pair["access_token"])) == {"active": False}
    assert await gateway_accepts(stack, newer["access_token"])  # the family lives on


async def test_revoking_the_cookie_sessions_jwt_makes_the_gateway_mint_a_new_one(stack: InProcess) -> None:
    before = (await stack.broker.get("/auth/verify")).headers["authorization"].removeprefix("Bearer ")
    await stack.broker.post("/oauth/revoke", data={"token": before})
    after = await stack.broker.get("/auth/verify")
    assert after.status_code == 200
    assert after.headers["authorization"].removeprefix("Bearer ") != before
    assert not await gateway_accepts(stack, before)


@pytest.mark.parametrize("token", ["unknown", "brt1." + "a" * 22 + "." + "b" * 32 + "." + "c" * 43, "x.y.z"])
async def test_revoking_unknown_tokens_answers_200(stack: InProcess, token: str) -> None:
    assert (await stack.broker.post("/oauth/revoke", data={"token": token})).status_code == 200


async def test_introspection_requires_a_confidential_client(stack: InProcess) -> None:
    pair = await first_pair(stack)
    for headers, data in (({}, {}), (basic("gateway", "wrong"), {}), (basic("nobody", "x"), {}),
                          ({}, {"client_id": "spa"}), ({}, {"client_id": "gateway", "client_secret": GATEWAY_SECRET})):
        response = await stack.broker.post("/oauth/introspect", data={"token": str(pair["access_token"]), **data},
                                           headers=headers)
        assert response.status_code == 401, (headers, data)
        assert response.json()["error"] == "invalid_client"
        assert response.headers["www-authenticate"].startswith("Basic")
    answer = await introspect(stack, pair["access_token"])
    assert answer["active"] is True and answer["token_type"] == "access_token"
    assert answer["sub"] and answer["sid"] and answer["scope"] == "user.info.basic"


async def test_a_family_never_outlives_its_browser_session(stack: InProcess) -> None:
    pair = await first_pair(stack)
    token = pair["refresh_token"]
    step = stack.settings.session_idle_ttl - 60
    while stack.clock.now() + step < stack.clock.now() + stack.settings.session_ttl:
        stack.clock.advance(step)
        response = await refresh(stack, token)
        if response.status_code != 200:
            break
        token = response.json()["refresh_token"]
    assert (await refresh(stack, token)).status_code == 400
    assert (await introspect(stack, token)) == {"active": False}


async def test_discovery_lists_the_token_endpoints(stack: InProcess) -> None:
    document = (await stack.broker.get("/.well-known/openid-configuration")).json()
    issuer = stack.settings.issuer
    assert document["token_endpoint"] == f"{issuer}/oauth/token"
    assert document["revocation_endpoint"] == f"{issuer}/oauth/revoke"
    assert document["introspection_endpoint"] == f"{issuer}/oauth/introspect"
    assert "refresh_token" in document["grant_types_supported"]


async def test_token_endpoint_rejects_bad_requests(stack: InProcess) -> None:
    json_body = await stack.broker.post("/oauth/token", json={"grant_type": "refresh_token"})
    assert json_body.status_code == 400 and json_body.json()["error"] == "invalid_request"
    unknown = await stack.broker.post("/oauth/token", data={"grant_type": "password"})
    assert unknown.status_code == 400 and unknown.json()["error"] == "unsupported_grant_type"
    doubled = await stack.broker.post("/oauth/token", content="grant_type=refresh_token&grant_type=refresh_token",
                                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert doubled.status_code == 400 and doubled.json()["error"] == "invalid_request"


async def test_a_rotation_and_a_replay_are_one_redis_round_trip_each(
        base_settings: Settings, clients_file: Path, monkeypatch: pytest.MonkeyPatch, redis_sync: redis.Redis) -> None:
    """One script loads, checks and rotates the family (and, inside the grace window, answers the replay). Rate
    limits, when on, add their own round trip (the limiter's buckets): off here."""
    from redis.asyncio.client import Pipeline, Redis

    async with in_process(base_settings, clients_file=clients_file, rate_limits=False) as stack:
        await stack.sign_in()
        await _count_round_trips(stack, monkeypatch, redis_sync, Redis, Pipeline)


async def _count_round_trips(stack: InProcess, monkeypatch: pytest.MonkeyPatch, redis_sync: redis.Redis,
                             Redis: Any, Pipeline: Any) -> None:
    first = await first_pair(stack)
    token = (await refresh(stack, first["refresh_token"])).json()["refresh_token"]  # the script is loaded
    trips: list[str] = []
    command, pipeline = Redis.execute_command, Pipeline.execute

    async def counted_command(self: Any, *args: object, **options: object) -> object:
        trips.append(str(args[0]))
        return await command(self, *args, **options)

    async def counted_pipeline(self: Any, *args: object, **options: object) -> object:
        trips.append("pipeline")
        return await pipeline(self, *args, **options)

    monkeypatch.setattr(Redis, "execute_command", counted_command)
    monkeypatch.setattr(Pipeline, "execute", counted_pipeline)
    rotated = await refresh(stack, token)
    assert rotated.status_code == 200 and trips == ["EVALSHA"]
    replayed = await refresh(stack, token)
    assert replayed.json() == rotated.json() and trips == ["EVALSHA", "EVALSHA"]
    # The grace copy holds no token in the clear: the successor is sealed, bound to the copy's key name.
    sub = str(token).split(".")[1]
    (copy,) = [redis_sync.get(key) for key in redis_sync.keys(f"broker:{{u:{sub}}}:rtg:*")]
    assert rotated.json()["refresh_token"] not in str(copy) and rotated.json()["access_token"] not in str(copy)


async def test_another_clients_token_rotates_nothing(stack: InProcess) -> None:
    first = await first_pair(stack)  # the broker's own family: no client may refresh it
    refused = await stack.broker.post("/oauth/token", data={"grant_type": "refresh_token",
                                                            "refresh_token": str(first["refresh_token"]),
                                                            "client_id": "spa"})
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert (await refresh(stack, first["refresh_token"])).status_code == 200  # still the current token
