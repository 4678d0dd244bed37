"""Display API videos: list pages by cursor, query by id, field selection, scope gate, errors, faults, rate limit."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from broker.clock import FrozenClock
from tiktok_emulator.video_seed import seed_videos
from tiktok_emulator.videos import VIDEO_FIELDS

from .conftest import MakeTikTok
from .support import MARA, TikTok

WITH_VIDEOS = ("user.info.basic", "video.list")
JUN = "3f9a6b1c-2d4e-4f50-8a71-b2c3d4e5f607"


async def video_token(tiktok: TikTok, **login: Any) -> str:
    # Only requested scopes can be granted, so ask for video.list too (support's default omits it).
    token: str = (await tiktok.tokens(scope=",".join(WITH_VIDEOS), scopes=WITH_VIDEOS, **login))["access_token"]
    return token


async def video_list(tiktok: TikTok, token: str | None, body: Any = None, fields: str | None = "id,create_time",
                     *, content: bytes | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    params = {"fields": fields} if fields is not None else {}
    if content is not None:
        return await tiktok.client.post("/v2/video/list/", params=params, headers=headers, content=content)
    return await tiktok.client.post("/v2/video/list/", params=params, headers=headers,
                                    json={} if body is None else body)


async def video_query(tiktok: TikTok, token: str | None, body: Any, fields: str = "id,title") -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return await tiktok.client.post("/v2/video/query/", params={"fields": fields}, headers=headers, json=body)


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"}, body  # errors never carry `data`
    assert re.match(r"^\d{14}", body["error"]["log_id"])
    return str(body["error"]["code"])


def test_seed_is_deterministic_and_distinct() -> None:
    mara = seed_videos(MARA)
    assert mara == seed_videos(MARA) and 3 <= len(mara) <= 5
    times = [v.create_time for v in mara]
    assert times == sorted(times, reverse=True) and len(set(times)) == len(times)
    assert all(re.fullmatch(r"7\d{18}", v.id) for v in mara)
    assert not {v.id for v in mara} & {v.id for v in seed_videos(JUN)}


async def test_list_envelope_newest_first(tiktok: TikTok) -> None:
    response = await video_list(tiktok, await video_token(tiktok))
    body = response.json()
    assert response.status_code == 200
    assert body["error"]["code"] == "ok" and body["error"]["message"] == ""
    assert body["error"]["log_id"] == response.headers["x-tt-logid"]
    expected = seed_videos(MARA)
    assert body["data"]["videos"] == [{"id": v.id, "create_time": v.create_time} for v in expected]
    assert body["data"]["has_more"] is False
    assert body["data"]["cursor"] == expected[-1].create_time * 1000


async def test_list_pages_by_cursor(tiktok: TikTok) -> None:
    token = await video_token(tiktok)
    seen: list[str] = []
    cursor: int | None = None
    pages = 0
    while True:
        body = {"max_count": 2} if cursor is None else {"max_count": 2, "cursor": cursor}
        data = (await video_list(tiktok, token, body)).json()["data"]
        assert 1 <= len(data["videos"]) <= 2
        seen += [v["id"] for v in data["videos"]]
        cursor = data["cursor"]
        assert cursor == data["videos"][-1]["create_time"] * 1000
        pages += 1
        if not data["has_more"]:
            break
    assert seen == [v.id for v in seed_videos(MARA)]  # every video once, in order
    assert pages == (len(seen) + 1) // 2
    past_the_end = (await video_list(tiktok, token, {"cursor": cursor})).json()["data"]
    assert past_the_end == {"videos": [], "cursor": cursor, "has_more": False}


async def test_typed_user_gets_stable_videos(tiktok: TikTok) -> None:
    token = await video_token(tiktok, user="", display_name="Zed Typed")
    open_id = tiktok.state.tokens.access(token).open_id  # type: ignore[union-attr]
    assert open_id is not None and open_id != MARA
    ids = [v["id"] for v in (await video_list(tiktok, token, {"max_count": 20})).json()["data"]["videos"]]
    assert ids == [v.id for v in seed_videos(open_id)]


async def test_field_selection_every_field_and_unknown_ignored(tiktok: TikTok) -> None:
    token = await video_token(tiktok)
    every = (await video_list(tiktok, token, {"max_count": 1}, ",".join(VIDEO_FIELDS) + ",email,nonsense"))
    video = every.json()["data"]["videos"][0]
    assert set(video) == set(VIDEO_FIELDS)
    assert isinstance(video["duration"], int) and isinstance(video["view_count"], int)
    assert "/@mara.example/video/" + video["id"] in video["share_url"]
    assert video["id"] in video["embed_link"] and f'data-video-id="{video["id"]}"' in video["embed_html"]
    cover = await tiktok.client.get(video["cover_image_url"].replace("http://127.0.0.1:8081", ""))
    assert cover.status_code == 200
    some = (await video_list(tiktok, token, {}, "title, like_count")).json()["data"]["videos"]
    assert all(set(v) == {"title", "like_count"} for v in some)


@pytest.mark.parametrize("fields", [None, "", " , "])
async def test_fields_is_required(tiktok: TikTok, fields: str | None) -> None:
    response = await video_list(tiktok, await video_token(tiktok), {}, fields)
    assert response.status_code == 400 and error_code(response) == "invalid_params"


async def test_query_returns_only_own_videos(tiktok: TikTok) -> None:
    token = await video_token(tiktok)
    mine = seed_videos(MARA)
    foreign = seed_videos(JUN)[0].id
    asked = [mine[2].id, foreign, "7000000000000000000", mine[0].id, mine[2].id]
    response = await video_query(tiktok, token, {"filters": {"video_ids": asked}})
    assert response.status_code == 200
    body = response.json()
    assert body["error"]["code"] == "ok"
    assert body["data"] == {"videos": [{"id": mine[2].id, "title": mine[2].title},
                                       {"id": mine[0].id, "title": mine[0].title}]}
    nothing = await video_query(tiktok, token, {"filters": {"video_ids": [foreign]}})
    assert nothing.status_code == 200 and nothing.json()["data"] == {"videos": []}


@pytest.mark.parametrize("body", [
    {}, {"filters": {}}, {"filters": {"video_ids": []}}, {"filters": {"video_ids": "7123"}},
    {"filters": {"video_ids": [7123]}}, {"filters": {"video_ids": [str(i) for i in range(21)]}}, [],
])
async def test_query_bad_body(tiktok: TikTok, body: Any) -> None:
    response = await video_query(tiktok, await video_token(tiktok), body)
    assert response.status_code == 400 and error_code(response) == "invalid_params"


@pytest.mark.parametrize("body", [{"max_count": 0}, {"max_count": 21}, {"max_count": "5"}, {"max_count": True},
                                  {"cursor": -1}, {"cursor": "123"}, {"cursor": 1.5}, [1]])
async def test_list_bad_body(tiktok: TikTok, body: Any) -> None:
    response = await video_list(tiktok, await video_token(tiktok), body)
    assert response.status_code == 400 and error_code(response) == "invalid_params"


@pytest.mark.parametrize("content", [b"", b"not json", b'"a string"'])
async def test_list_body_must_be_json_object(tiktok: TikTok, content: bytes) -> None:
    response = await video_list(tiktok, await video_token(tiktok), content=content)
    assert response.status_code == 400 and error_code(response) == "invalid_params"


async def test_scope_gate_without_video_list(tiktok: TikTok) -> None:
    # video.list was requested, then unticked on the consent page.
    token = (await tiktok.tokens(scope="user.info.basic,user.info.profile,video.list",
                                 scopes=("user.info.basic", "user.info.profile")))["access_token"]
    for response in (await video_list(tiktok, token),
                     await video_query(tiktok, token, {"filters": {"video_ids": [seed_videos(MARA)[0].id]}})):
        assert response.status_code == 401 and error_code(response) == "scope_not_authorized"


async def test_app_token_is_not_authorized(tiktok: TikTok) -> None:
    token = tiktok.state.tokens.issue_client_token().token
    response = await video_list(tiktok, token)
    assert response.status_code == 401 and error_code(response) == "scope_not_authorized"


@pytest.mark.parametrize("token", [None, "act.not-a-real-token"])
async def test_missing_or_unknown_token(tiktok: TikTok, token: str | None) -> None:
    for response in (await video_list(tiktok, token), await video_query(tiktok, token, {"filters": {}})):
        assert response.status_code == 401 and error_code(response) == "access_token_invalid"


async def test_expired_and_revoked_tokens(tiktok: TikTok, clock: FrozenClock) -> None:
    token = await video_token(tiktok)
    clock.advance(7200)
    assert error_code(await video_list(tiktok, token)) == "access_token_invalid"
    fresh = await video_token(tiktok)
    assert (await tiktok.revoke(fresh)).status_code == 200
    assert error_code(await video_list(tiktok, fresh)) == "access_token_invalid"


async def test_calls_are_recorded_with_the_token(tiktok: TikTok) -> None:
    token = await video_token(tiktok)
    await video_list(tiktok, token)
    await video_query(tiktok, token, {"filters": {"video_ids": ["1"]}})
    await video_list(tiktok, token, {"max_count": 99})
    assert [(c["endpoint"], c["token"], c["status"], c["error"]) for c in tiktok.state.calls[-3:]] == [
        ("video_list", token, 200, None), ("video_query", token, 200, None),
        ("video_list", token, 400, "invalid_params")]


@pytest.mark.parametrize("endpoint", ["video_list", "video_query"])
@pytest.mark.parametrize(("mode", "status", "code"), [
    ("http_500", 500, "internal_error"),
    ("error_200", 200, "internal_error"),
    ("rate_limit", 429, "rate_limit_exceeded"),
])
async def test_fault_modes(tiktok: TikTok, endpoint: str, mode: str, status: int, code: str) -> None:
    token = await video_token(tiktok)
    added = await tiktok.client.post("/_emulator/faults", json={"endpoint": endpoint, "mode": mode, "count": 1})
    assert added.status_code == 201, added.text

    async def call() -> httpx.Response:
        if endpoint == "video_list":
            return await video_list(tiktok, token)
        return await video_query(tiktok, token, {"filters": {"video_ids": [seed_videos(MARA)[0].id]}})

    other = "video_query" if endpoint == "video_list" else "video_list"
    response = await call()
    assert response.status_code == status and error_code(response) == code
    assert tiktok.state.calls[-1] == {**tiktok.state.calls[-1], "endpoint": endpoint, "token": token,
                                      "status": status, "error": f"fault:{mode}"}
    assert (await call()).status_code == 200  # count=1 is used up
    tiktok.state.set_fault(other, mode)
    assert (await call()).status_code == 200  # faults are per endpoint


async def test_garbage_fault(tiktok: TikTok) -> None:
    token = await video_token(tiktok)
    tiktok.state.set_fault("video_list", "garbage", count=1)
    response = await video_list(tiktok, token)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")


async def test_rate_limit_per_endpoint_sliding_window(make_tiktok: MakeTikTok, clock: FrozenClock) -> None:
    tiktok = make_tiktok(rate_limit_per_minute=3)
    token = await video_token(tiktok)
    for _ in range(3):
        assert (await video_list(tiktok, token)).status_code == 200
    limited = await video_list(tiktok, token)
    assert limited.status_code == 429 and error_code(limited) == "rate_limit_exceeded"
    # Each API has its own window: query and user info are unaffected.
    assert (await video_query(tiktok, token, {"filters": {"video_ids": ["1"]}})).status_code == 200
    assert (await tiktok.user_info(token)).status_code == 200
    clock.advance(60)
    assert (await video_list(tiktok, token)).status_code == 200
    for _ in range(3):
        await video_list(tiktok, token)
    tiktok.state.reset()
    token = await video_token(tiktok)
    assert (await video_list(tiktok, token)).status_code == 200  # reset forgets the window
