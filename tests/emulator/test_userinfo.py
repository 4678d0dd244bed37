"""User info: Bearer check, field selection, scope gating, envelope shape, rate limit."""

from __future__ import annotations

import re

import pytest

from broker.clock import FrozenClock

from .conftest import MakeTikTok
from .support import MARA, TikTok

EVERY_FIELD = ("open_id,union_id,avatar_url,avatar_url_100,avatar_large_url,display_name,bio_description,"
               "profile_deep_link,is_verified,username,follower_count,following_count,likes_count,video_count")


def error_code(response_json: dict[str, object]) -> str:
    assert set(response_json) == {"error"}, response_json  # errors never carry `data`
    error = response_json["error"]
    assert isinstance(error, dict) and re.match(r"^\d{14}", error["log_id"])
    return str(error["code"])


async def test_success_envelope_with_only_requested_fields(tiktok: TikTok) -> None:
    tokens = await tiktok.tokens()
    response = await tiktok.user_info(tokens["access_token"], "open_id,display_name,username,email,nonsense")
    body = response.json()
    assert response.status_code == 200
    assert body["data"]["user"] == {"open_id": MARA, "display_name": "Mara Example", "username": "mara.example"}
    assert body["error"]["code"] == "ok" and body["error"]["message"] == ""
    assert body["error"]["log_id"] == response.headers["x-tt-logid"]
    assert tiktok.state.calls[-1]["token"] == tokens["access_token"]


async def test_every_field_and_never_an_email(tiktok: TikTok) -> None:
    tokens = await tiktok.tokens()
    user = (await tiktok.user_info(tokens["access_token"], EVERY_FIELD + ",email")).json()["data"]["user"]
    assert set(user) == set(EVERY_FIELD.split(","))
    assert user["is_verified"] is True and user["follower_count"] == 120_400
    assert "email" not in str(user).lower()
    avatar = await tiktok.client.get(user["avatar_url_100"].replace("http://127.0.0.1:8081", ""))
    assert avatar.status_code == 200 and avatar.headers["content-type"].startswith("image/svg+xml")


@pytest.mark.parametrize("token", [None, "act.not-a-real-token"])
async def test_missing_or_unknown_token(tiktok: TikTok, token: str | None) -> None:
    response = await tiktok.user_info(token)
    assert response.status_code == 401
    assert error_code(response.json()) == "access_token_invalid"


async def test_access_token_expires_on_the_clock(tiktok: TikTok, clock: FrozenClock) -> None:
    token = (await tiktok.tokens())["access_token"]
    clock.advance(7199)
    assert (await tiktok.user_info(token)).status_code == 200
    clock.advance(1)
    assert error_code((await tiktok.user_info(token)).json()) == "access_token_invalid"


async def test_fields_is_required(tiktok: TikTok) -> None:
    response = await tiktok.user_info((await tiktok.tokens())["access_token"], fields=None)
    assert response.status_code == 400
    assert error_code(response.json()) == "invalid_params"


@pytest.mark.parametrize(("granted", "fields", "status", "code"), [
    (("user.info.basic",), "display_name,username", 400, "scope_permission_missed"),
    (("user.info.basic", "user.info.profile"), "username,follower_count", 400, "scope_permission_missed"),
    (("user.info.basic", "user.info.stats"), "follower_count,video_count", 200, "ok"),
])
async def test_fields_are_gated_by_granted_scopes(
        tiktok: TikTok, granted: tuple[str, ...], fields: str, status: int, code: str) -> None:
    tokens = await tiktok.tokens(scopes=granted)
    response = await tiktok.user_info(tokens["access_token"], fields)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


async def test_token_without_basic_is_not_authorized(tiktok: TikTok) -> None:
    tokens = await tiktok.tokens(scope="video.list", scopes=("video.list",))
    assert tokens["scope"] == "video.list"
    response = await tiktok.user_info(tokens["access_token"])
    assert response.status_code == 401
    assert error_code(response.json()) == "scope_not_authorized"


async def test_rate_limit_is_a_sliding_minute(make_tiktok: MakeTikTok, clock: FrozenClock) -> None:
    tiktok = make_tiktok(rate_limit_per_minute=3)
    token = (await tiktok.tokens())["access_token"]
    for _ in range(3):
        assert (await tiktok.user_info(token)).status_code == 200
        clock.advance(10)
    limited = await tiktok.user_info(token)
    assert limited.status_code == 429
    assert error_code(limited.json()) == "rate_limit_exceeded"
    clock.advance(30.5)  # the first request (at t=0) has left the window; the other two have not
    assert (await tiktok.user_info(token)).status_code == 200
    assert (await tiktok.user_info(token)).status_code == 429
