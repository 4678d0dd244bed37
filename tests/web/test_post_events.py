"""TikTok's posting webhooks become downstream `tiktok.post.*` events: in process, a real Redis, a frozen clock."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis

from broker.config import Settings
from tests.support.inprocess import ALICE, InProcess, in_process

POSTING = ("user.info.basic", "video.publish", "video.upload")
STREAM = "broker:{events}"


@pytest.fixture
async def stack(base_settings: Settings) -> AsyncIterator[InProcess]:
    async with in_process(base_settings, tiktok_scopes=POSTING) as running:
        await running.sign_in(scopes=POSTING)
        yield running


def envelope(event: str, content: dict[str, Any], *, create_time: int = 1_800_000_000, user: str = ALICE) -> bytes:
    return json.dumps({"client_key": "emulator-client-key", "event": event, "create_time": create_time,
                       "user_openid": user, "content": json.dumps(content)}).encode()


async def deliver(stack: InProcess, body: bytes) -> dict[str, Any]:
    t = int(stack.clock.now())
    secret = stack.settings.tiktok_client_secret.reveal().encode()
    signature = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    response = await stack.broker.post("/webhooks/tiktok", content=body, headers={
        "TikTok-Signature": f"t={t},s={signature}", "Content-Type": "application/json"})
    answer: dict[str, Any] = {"status_code": response.status_code, **response.json()}
    return answer


def downstream(redis_sync: redis.Redis) -> list[dict[str, Any]]:
    return [{**fields, "data": json.loads(fields["data"])} for _, fields in redis_sync.xrange(STREAM)
            if fields["type"].startswith("tiktok.post.")]


async def sub_of(stack: InProcess) -> tuple[str, str]:
    """(access JWT, sub) of the signed-in user."""
    check = await stack.broker.get("/auth/verify")
    return check.headers["authorization"].removeprefix("Bearer "), check.headers["x-auth-request-user"]


async def test_each_posting_event_maps_to_its_downstream_event(stack: InProcess, redis_sync: redis.Redis) -> None:
    _, sub = await sub_of(stack)
    cases = [
        ("post.publish.failed", {"publish_id": "v.1", "reason": "file_format_check_failed",
                                 "publish_type": "DIRECT_PUBLISH"},
         "tiktok.post.failed", {"publish_id": "v.1", "reason": "file_format_check_failed",
                                "publish_type": "DIRECT_PUBLISH"}),
        ("post.publish.complete", {"publish_id": "v.2", "publish_type": "DIRECT_PUBLISH"},
         "tiktok.post.complete", {"publish_id": "v.2", "publish_type": "DIRECT_PUBLISH"}),
        ("post.publish.inbox_delivered", {"publish_id": "v.3", "publish_type": "INBOX_SHARE"},
         "tiktok.post.inbox_delivered", {"publish_id": "v.3", "publish_type": "INBOX_SHARE"}),
        ("post.publish.publicly_available", {"publish_id": "v.2", "post_id": 7312345678901234567},
         "tiktok.post.publicly_available", {"publish_id": "v.2", "post_id": "7312345678901234567"}),
        ("post.publish.no_longer_publicaly_available", {"publish_id": "v.2", "post_id": "7312345678901234567"},
         "tiktok.post.no_longer_publicly_available", {"publish_id": "v.2", "post_id": "7312345678901234567"}),
        ("video.upload.failed", {"share_id": "video.697.VDCx"}, "tiktok.post.share_failed",
         {"share_id": "video.697.VDCx"}),
        ("video.publish.completed", {"share_id": "video.697.VDCx"}, "tiktok.post.share_completed",
         {"share_id": "video.697.VDCx"}),
    ]
    for tiktok_event, content, _, _ in cases:
        assert await deliver(stack, envelope(tiktok_event, content)) == {"status_code": 200, "status": "processed"}
    events = downstream(redis_sync)
    assert [(e["type"], e["data"]) for e in events] == [(ours, data) for _, _, ours, data in cases]
    assert all(e["sub"] == sub for e in events)
    assert not any(ALICE in json.dumps(e) for e in events)  # the open_id never leaves the broker


async def test_a_redelivered_event_is_passed_on_once(stack: InProcess, redis_sync: redis.Redis) -> None:
    body = envelope("post.publish.complete", {"publish_id": "v.9", "publish_type": "DIRECT_PUBLISH"})
    assert (await deliver(stack, body))["status"] == "processed"
    assert (await deliver(stack, body))["status"] == "duplicate"
    other_post = envelope("post.publish.complete", {"publish_id": "v.10", "publish_type": "DIRECT_PUBLISH"})
    assert (await deliver(stack, other_post))["status"] == "processed"  # same second, another post: its own event
    assert [e["data"]["publish_id"] for e in downstream(redis_sync)] == ["v.9", "v.10"]
    assert redis_sync.hget("broker:{events}:out:stats", "emitted") == "2"
    metrics = (await stack.broker.get("/metrics")).text
    assert 'broker_tiktok_webhooks_total{outcome="duplicate"} 1.0' in metrics


async def test_the_event_names_the_client_that_made_the_post(stack: InProcess, redis_sync: redis.Redis) -> None:
    token, _ = await sub_of(stack)
    init = await stack.broker.post("/tiktok/v2/post/publish/video/init/", headers={"Authorization": f"Bearer {token}"},
                                   json={"post_info": {"privacy_level": "SELF_ONLY"},
                                         "source_info": {"source": "FILE_UPLOAD", "video_size": 1000,
                                                         "chunk_size": 1000, "total_chunk_count": 1}})
    assert init.status_code == 200, init.text
    publish_id = init.json()["data"]["publish_id"]
    body = envelope("post.publish.failed", {"publish_id": publish_id, "reason": "internal",
                                            "publish_type": "DIRECT_PUBLISH"})
    assert (await deliver(stack, body))["status"] == "processed"
    [event] = downstream(redis_sync)
    assert event["data"] == {"publish_id": publish_id, "reason": "internal", "publish_type": "DIRECT_PUBLISH",
                             "client_id": "browser"}  # a cookie session's token: the broker's own pages


async def test_unknown_types_and_users_are_acknowledged_and_bad_content_refused(stack: InProcess,
                                                                                redis_sync: redis.Redis) -> None:
    unknown = await deliver(stack, envelope("comment.created", {"comment_id": "1"}))
    assert unknown == {"status_code": 200, "status": "unknown"}
    stranger = await deliver(stack, envelope("post.publish.complete", {"publish_id": "v.1"}, user="someone-else"))
    assert stranger == {"status_code": 200, "status": "ignored"}
    for content in ({}, {"publish_id": ""}, {"publish_id": ["v.1"]}, {"publish_id": "v.1", "post_id": "x" * 129}):
        refused = await deliver(stack, envelope("post.publish.complete", content))
        assert refused["status_code"] == 400 and refused["error"] == "invalid_request", content
    assert (await deliver(stack, envelope("video.upload.failed", {})))["status_code"] == 400
    assert downstream(redis_sync) == []
    metrics = (await stack.broker.get("/metrics")).text
    assert 'broker_tiktok_webhooks_total{outcome="unknown"} 1.0' in metrics
    assert 'broker_tiktok_webhooks_total{outcome="ignored"} 1.0' in metrics
