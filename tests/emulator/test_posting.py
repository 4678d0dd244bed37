"""The Content Posting API of the emulator: creator info, inits, chunked uploads, status over time, caps, webhooks."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest

from broker.clock import FrozenClock
from tests.support.media import fake_video
from tiktok_emulator import EmulatorConfig, TestUser
from tiktok_emulator.config import DEFAULT_USERS

from .conftest import MakeTikTok
from .support import MARA, TikTok
from .test_webhooks import Receiver, with_receiver

ADA = "a0b1c2d3-e4f5-4a6b-9c8d-7e6f5a4b3c2d"  # the seeded private account
POSTING = "user.info.basic,video.publish,video.upload"
KB = 1024
MB = 1024 * KB
PHOTOS = "https://media.example.com/"
SMALL_CHUNKS = {"min_chunk_bytes": 4 * KB, "publish_processing_seconds": 10.0, "verified_url_prefixes": (PHOTOS,)}


async def token_for(tiktok: TikTok, scope: str = POSTING, user: str = MARA, **login: Any) -> str:
    body = await tiktok.tokens(scope=scope, scopes=tuple(scope.split(",")), user=user, **login)
    return str(body["access_token"])


async def call(tiktok: TikTok, path: str, token: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return await tiktok.client.post(f"/v2/post/publish/{path}", json=body,
                                    headers={"Authorization": f"Bearer {token}"})


def file_upload(size: int, chunk: int, total: int | None = None) -> dict[str, Any]:
    return {"source": "FILE_UPLOAD", "video_size": size, "chunk_size": chunk,
            "total_chunk_count": size // chunk if total is None else total}


async def direct_init(tiktok: TikTok, token: str, size: int, chunk: int, *, privacy: str = "SELF_ONLY",
                      **post_info: Any) -> httpx.Response:
    return await call(tiktok, "video/init/", token, {"post_info": {"privacy_level": privacy, **post_info},
                                                     "source_info": file_upload(size, chunk)})


async def put(tiktok: TikTok, url: str, data: bytes, first: int, last: int, *,
              content_type: str = "video/mp4") -> httpx.Response:
    return await tiktok.client.put(url, content=data[first:last + 1], headers={
        "Content-Type": content_type, "Content-Range": f"bytes {first}-{last}/{len(data)}"})


async def upload(tiktok: TikTok, url: str, data: bytes, chunk: int) -> list[int]:
    total = len(data) // chunk
    statuses = []
    for index in range(total):
        last = len(data) - 1 if index == total - 1 else (index + 1) * chunk - 1
        statuses.append((await put(tiktok, url, data, index * chunk, last)).status_code)
    return statuses


async def status(tiktok: TikTok, token: str, publish_id: str) -> dict[str, Any]:
    response = await call(tiktok, "status/fetch/", token, {"publish_id": publish_id})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def events(receiver: Receiver) -> list[tuple[str, dict[str, Any]]]:
    return [(str(e["event"]), json.loads(str(e["content"]))) for e in receiver.events]


async def test_creator_info_offers_the_account_s_privacy_levels(make_tiktok: MakeTikTok) -> None:
    tiktok = make_tiktok()
    public = (await call(tiktok, "creator_info/query/", await token_for(tiktok))).json()
    assert public["error"]["code"] == "ok"
    assert public["data"]["creator_username"] == "mara.example" and public["data"]["creator_nickname"] == "Mara Example"
    assert public["data"]["privacy_level_options"] == ["PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"]
    assert public["data"]["max_video_post_duration_sec"] == 600
    assert public["data"]["creator_avatar_url"].startswith("http")
    private = (await call(tiktok, "creator_info/query/", await token_for(tiktok, user=ADA))).json()["data"]
    assert private["privacy_level_options"] == ["FOLLOWER_OF_CREATOR", "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"]
    unaudited = make_tiktok(audited=False)
    offered = (await call(unaudited, "creator_info/query/", await token_for(unaudited))).json()["data"]
    assert offered["privacy_level_options"] == ["SELF_ONLY"]


async def test_each_call_needs_its_scope_and_a_live_token(make_tiktok: MakeTikTok) -> None:
    tiktok = make_tiktok(**SMALL_CHUNKS)
    basic_only = await token_for(tiktok, scope="user.info.basic")
    upload_only = await token_for(tiktok, scope="user.info.basic,video.upload")
    for path, token in (("creator_info/query/", basic_only), ("creator_info/query/", upload_only),
                        ("video/init/", upload_only), ("inbox/video/init/", basic_only),
                        ("status/fetch/", basic_only)):
        refused = await call(tiktok, path, token, {})
        assert (refused.status_code, refused.json()["error"]["code"]) == (401, "scope_not_authorized"), path
    photo_draft = {"media_type": "PHOTO", "post_mode": "DIRECT_POST", "post_info": {"privacy_level": "SELF_ONLY"},
                   "source_info": {"source": "PULL_FROM_URL", "photo_images": [PHOTOS + "a.jpg"]}}
    assert (await call(tiktok, "content/init/", upload_only, photo_draft)).status_code == 401
    assert (await call(tiktok, "creator_info/query/", "act.unknown")).json()["error"]["code"] == "access_token_invalid"


async def test_a_video_in_several_chunks_is_published_after_processing(make_tiktok: MakeTikTok,
                                                                       clock: FrozenClock) -> None:
    tiktok, receiver = with_receiver(make_tiktok, **SMALL_CHUNKS)
    token = await token_for(tiktok)
    data = fake_video(50 * KB + 123)  # 5 chunks of 10 KB, the 123 trailing bytes joining the last
    init = await direct_init(tiktok, token, len(data), 10 * KB, privacy="PUBLIC_TO_EVERYONE", title="Hello")
    assert init.status_code == 200, init.text
    publish_id, upload_url = init.json()["data"]["publish_id"], init.json()["data"]["upload_url"]
    assert publish_id.startswith("v_pub_file~v2.") and len(publish_id) <= 64 and len(upload_url) <= 256
    assert (await status(tiktok, token, publish_id))["status"] == "PROCESSING_UPLOAD"
    assert await upload(tiktok, upload_url, data, 10 * KB) == [206, 206, 206, 206, 201]
    post = (await tiktok.client.get("/_emulator/posts")).json()["posts"][0]
    assert post["sha256"] == hashlib.sha256(data).hexdigest() and post["chunks_received"] == 5
    processing = await status(tiktok, token, publish_id)
    assert processing == {"status": "PROCESSING_UPLOAD", "publicaly_available_post_id": [],
                          "uploaded_bytes": len(data)}
    clock.advance(10)
    done = await status(tiktok, token, publish_id)
    assert done["status"] == "PUBLISH_COMPLETE" and len(done["publicaly_available_post_id"]) == 1
    await tiktok.state.webhooks.drain()
    post_id = str(done["publicaly_available_post_id"][0])
    assert events(receiver) == [
        ("post.publish.complete", {"publish_id": publish_id, "publish_type": "DIRECT_PUBLISH"}),
        ("post.publish.publicly_available", {"publish_id": publish_id, "publish_type": "DIRECT_PUBLISH",
                                             "post_id": post_id})]
    assert all(e["user_openid"] == MARA for e in receiver.events)
    taken_down = await tiktok.client.post(f"/_emulator/posts/{publish_id}/take-down")
    assert taken_down.status_code == 200
    await tiktok.state.webhooks.drain()
    assert events(receiver)[-1][0] == "post.publish.no_longer_publicaly_available"
    assert (await status(tiktok, token, publish_id))["publicaly_available_post_id"] == []


async def test_the_chunk_rules_are_tiktok_s(make_tiktok: MakeTikTok, clock: FrozenClock) -> None:
    strict = make_tiktok()  # TikTok's own 5 MB minimum
    token = await token_for(strict)
    for size, chunk, total, why in ((12 * MB, MB, 12, "between"), (3 * MB, MB, 3, "whole"),
                                    (12 * MB, 5 * MB, 3, "rounded down"), (200 * MB, 65 * MB, 3, "between"),
                                    (100 * MB, 64 * MB, 1, "several chunks"), (6000 * MB, 5 * MB, 1200, "1000")):
        response = await call(strict, "video/init/", token, {"post_info": {"privacy_level": "SELF_ONLY"},
                                                             "source_info": file_upload(size, chunk, total)})
        assert response.status_code == 400, (size, chunk)
        assert response.json()["error"]["code"] == "invalid_params" and why in response.json()["error"]["message"]
    clock.advance(60)  # a new minute: six more inits
    for size, chunk in ((3 * MB, 3 * MB), (12 * MB, 5 * MB), (7 * MB, 7 * MB), (100 * MB, 50 * MB)):
        assert (await direct_init(strict, token, size, chunk)).status_code == 200, (size, chunk)


async def test_uploads_go_in_order_with_exact_headers(make_tiktok: MakeTikTok, clock: FrozenClock) -> None:
    tiktok = make_tiktok(**SMALL_CHUNKS)
    token = await token_for(tiktok)
    data = fake_video(20 * KB)
    url = (await direct_init(tiktok, token, len(data), 8 * KB)).json()["data"]["upload_url"]
    assert (await put(tiktok, url, data, 8 * KB, 20 * KB - 1)).status_code == 416  # the second chunk first
    assert (await put(tiktok, url, data, 0, 8 * KB - 1, content_type="image/png")).status_code == 400
    wrong_total = await tiktok.client.put(url, content=data[:8 * KB], headers={
        "Content-Type": "video/mp4", "Content-Range": f"bytes 0-{8 * KB - 1}/{len(data) + 1}"})
    assert wrong_total.status_code == 400
    assert (await put(tiktok, url, data, 0, 4 * KB - 1)).status_code == 400  # shorter than chunk_size
    assert (await put(tiktok, url, data, 0, 8 * KB - 1)).status_code == 206
    assert (await put(tiktok, url, data, 0, 8 * KB - 1)).status_code == 206  # a retry of the same chunk
    assert (await tiktok.client.put(url.replace("upload_token=", "upload_token=x"), content=b"x")).status_code == 403
    clock.advance(3601)
    expired = await put(tiktok, url, data, 8 * KB, 20 * KB - 1)
    assert expired.status_code == 403 and "expired" in expired.json()["error"]["message"]
    assert (await tiktok.client.get("/_emulator/posts")).json()["posts"][0]["uploaded_bytes"] == 8 * KB


async def test_a_file_that_is_no_video_fails_with_its_reason(make_tiktok: MakeTikTok, clock: FrozenClock) -> None:
    tiktok, receiver = with_receiver(make_tiktok, **SMALL_CHUNKS)
    token = await token_for(tiktok)
    data = b"not a video at all" * 1000
    init = (await direct_init(tiktok, token, len(data), len(data))).json()["data"]
    assert await upload(tiktok, init["upload_url"], data, len(data)) == [201]
    clock.advance(10)
    assert (await status(tiktok, token, init["publish_id"]))["fail_reason"] == "file_format_check_failed"
    await tiktok.state.webhooks.drain()
    assert events(receiver) == [("post.publish.failed", {"publish_id": init["publish_id"],
                                                         "publish_type": "DIRECT_PUBLISH",
                                                         "reason": "file_format_check_failed"})]


async def test_inbox_uploads_and_photos_end_where_they_should(make_tiktok: MakeTikTok, clock: FrozenClock) -> None:
    tiktok, receiver = with_receiver(make_tiktok, **SMALL_CHUNKS)
    token = await token_for(tiktok)
    data = fake_video(3 * KB)
    inbox = await call(tiktok, "inbox/video/init/", token, {"source_info": file_upload(len(data), len(data))})
    assert inbox.status_code == 200 and inbox.json()["data"]["publish_id"].startswith("v_inbox_file~")
    assert await upload(tiktok, inbox.json()["data"]["upload_url"], data, len(data)) == [201]
    photo = await call(tiktok, "content/init/", token, {
        "media_type": "PHOTO", "post_mode": "MEDIA_UPLOAD", "post_info": {"title": "t", "description": "d"},
        "source_info": {"source": "PULL_FROM_URL", "photo_images": [PHOTOS + "1.jpg", PHOTOS + "2.jpg"],
                        "photo_cover_index": 1}})
    assert photo.status_code == 200, photo.text
    assert "upload_url" not in photo.json()["data"]
    photo_id = photo.json()["data"]["publish_id"]
    assert (await status(tiktok, token, photo_id))["status"] == "PROCESSING_DOWNLOAD"
    clock.advance(10)
    assert (await status(tiktok, token, inbox.json()["data"]["publish_id"]))["status"] == "SEND_TO_USER_INBOX"
    assert (await status(tiktok, token, photo_id))["status"] == "SEND_TO_USER_INBOX"
    await tiktok.state.webhooks.drain()
    assert [(name, content["publish_type"]) for name, content in events(receiver)] == [
        ("post.publish.inbox_delivered", "INBOX_SHARE")] * 2


async def test_photo_and_url_rules(make_tiktok: MakeTikTok) -> None:
    tiktok = make_tiktok(**SMALL_CHUNKS)
    token = await token_for(tiktok)
    good = {"media_type": "PHOTO", "post_mode": "DIRECT_POST", "post_info": {"privacy_level": "SELF_ONLY"},
            "source_info": {"source": "PULL_FROM_URL", "photo_images": [PHOTOS + "1.jpg"]}}
    assert (await call(tiktok, "content/init/", token, good)).status_code == 200
    for change, code in (({"photo_images": [PHOTOS + f"{i}.jpg" for i in range(36)]}, "invalid_params"),
                         ({"photo_images": ["https://elsewhere.example/1.jpg"]}, "url_ownership_unverified"),
                         ({"photo_cover_index": 1}, "invalid_params")):
        body = {**good, "source_info": {**good["source_info"], **change}}
        assert (await call(tiktok, "content/init/", token, body)).json()["error"]["code"] == code, change
    long_title = {**good, "post_info": {"privacy_level": "SELF_ONLY", "title": "x" * 91}}
    assert "title" in (await call(tiktok, "content/init/", token, long_title)).json()["error"]["message"]
    pull = {"post_info": {"privacy_level": "SELF_ONLY"},
            "source_info": {"source": "PULL_FROM_URL", "video_url": "https://unverified.example/v.mp4"}}
    refused = await call(tiktok, "video/init/", token, pull)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "url_ownership_unverified")
    emoji_title = "\U0001f600" * 1101  # 2,202 UTF-16 units in 1,101 characters
    assert (await direct_init(tiktok, token, 3 * KB, 3 * KB, title=emoji_title)).status_code == 400
    assert (await direct_init(tiktok, token, 3 * KB, 3 * KB, title="\U0001f600" * 1100)).status_code == 200


async def test_privacy_levels_and_the_unaudited_app_rules(make_tiktok: MakeTikTok) -> None:
    tiktok = make_tiktok(**SMALL_CHUNKS)
    private = await token_for(tiktok, user=ADA)
    mismatch = await direct_init(tiktok, private, 3 * KB, 3 * KB, privacy="PUBLIC_TO_EVERYONE")
    assert mismatch.json()["error"]["code"] == "privacy_level_option_mismatch"
    assert (await direct_init(tiktok, private, 3 * KB, 3 * KB, privacy="EVERYONE")).status_code == 400
    others = tuple(TestUser(f"private-{n}", f"union-{n}", f"Poster {n}", f"poster.{n}", private_account=True)
                   for n in range(5))
    unaudited = make_tiktok(audited=False, users=(*DEFAULT_USERS, *others), **SMALL_CHUNKS)
    public = await token_for(unaudited)
    refused = await direct_init(unaudited, public, 3 * KB, 3 * KB)
    assert (refused.status_code, refused.json()["error"]["code"]) == (
        403, "unaudited_client_can_only_post_to_private_accounts")
    ada = await token_for(unaudited, user=ADA)
    assert (await direct_init(unaudited, ada, 3 * KB, 3 * KB, privacy="FOLLOWER_OF_CREATOR")).json()["error"][
        "code"] == "privacy_level_option_mismatch"
    assert (await direct_init(unaudited, ada, 3 * KB, 3 * KB)).status_code == 200
    answers = [await direct_init(unaudited, await token_for(unaudited, user=other.open_id), 3 * KB, 3 * KB)
               for other in others]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 403]  # Ada and four others: five users
    assert answers[-1].json()["error"]["code"] == "reached_active_user_cap"
    assert (await direct_init(unaudited, ada, 3 * KB, 3 * KB)).status_code == 200  # Ada is one of the five


async def test_daily_cap_and_per_token_rate_limits(make_tiktok: MakeTikTok, clock: FrozenClock) -> None:
    tiktok = make_tiktok(daily_post_cap=2, **SMALL_CHUNKS)
    token = await token_for(tiktok)
    answers = [(await direct_init(tiktok, token, 3 * KB, 3 * KB)).json()["error"]["code"] for _ in range(3)]
    assert answers == ["ok", "ok", "spam_risk_too_many_posts"]
    clock.advance(86400)
    assert (await direct_init(tiktok, await token_for(tiktok), 3 * KB, 3 * KB)).json()["error"]["code"] == "ok"
    fresh = make_tiktok()
    token = await token_for(fresh)
    codes = [(await call(fresh, "creator_info/query/", token)).status_code for _ in range(21)]
    assert codes == [200] * 20 + [429]
    other = await token_for(fresh)  # the limit is per user access token
    assert (await call(fresh, "creator_info/query/", other)).status_code == 200
    inits = [(await call(fresh, "inbox/video/init/", token, {})).status_code for _ in range(7)]
    assert inits == [400] * 6 + [429]  # bad bodies count too


async def test_status_of_someone_else_s_post_is_unknown(make_tiktok: MakeTikTok) -> None:
    tiktok = make_tiktok(**SMALL_CHUNKS)
    mine = (await direct_init(tiktok, await token_for(tiktok), 3 * KB, 3 * KB)).json()["data"]["publish_id"]
    theirs = await call(tiktok, "status/fetch/", await token_for(tiktok, user=ADA), {"publish_id": mine})
    assert (theirs.status_code, theirs.json()["error"]["code"]) == (400, "invalid_params")


async def test_control_api_fails_a_post_and_sends_share_kit_events(make_tiktok: MakeTikTok) -> None:
    tiktok, receiver = with_receiver(make_tiktok, **SMALL_CHUNKS)
    token = await token_for(tiktok)
    publish_id = (await direct_init(tiktok, token, 3 * KB, 3 * KB)).json()["data"]["publish_id"]
    failed = await tiktok.client.post(f"/_emulator/posts/{publish_id}/fail", json={"reason": "internal"})
    assert failed.status_code == 200 and failed.json()["status"] == "FAILED"
    assert (await tiktok.client.post(f"/_emulator/posts/{publish_id}/fail", json={})).status_code == 409
    assert (await tiktok.client.post("/_emulator/posts/nope/fail", json={})).status_code == 404
    assert (await tiktok.client.post(f"/_emulator/posts/{publish_id}/take-down")).status_code == 409
    share = await tiktok.client.post("/_emulator/webhooks/share",
                                     json={"open_id": MARA, "event": "video.publish.completed", "share_id": "s.1"})
    assert share.status_code == 202
    bad = await tiktok.client.post("/_emulator/webhooks/share", json={"open_id": MARA, "event": "x", "share_id": "s"})
    assert bad.status_code == 400
    await tiktok.state.webhooks.drain()
    assert events(receiver) == [
        ("post.publish.failed", {"publish_id": publish_id, "publish_type": "DIRECT_PUBLISH", "reason": "internal"}),
        ("video.publish.completed", {"share_id": "s.1"})]


@pytest.mark.parametrize("value", [0, 5 * MB + 1])
def test_the_test_chunk_size_may_only_be_lowered(value: int) -> None:
    with pytest.raises(ValueError, match="min_chunk_bytes"):
        EmulatorConfig(min_chunk_bytes=value)
