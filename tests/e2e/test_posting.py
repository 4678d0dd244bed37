"""Posting a user's video through the proxy over a live stack: broker and emulator as real servers, a real Redis.

The emulator takes chunks smaller than TikTok's 5 MB (its test setting), so a small generated video goes up in
several chunks; every refusal of the broker is shown to cost no TikTok call (the emulator's call log).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import redis

from broker.clients import secret_digest
from broker.config import Settings
from broker_sdk.tiktok import BrokerApiError, BrokerTikTok, PostResult
from tests.e2e.conftest import ALICE, Stack, live_stack
from tests.e2e.test_deletion import Receiver
from tests.support.browser import Browser
from tests.support.media import fake_video
from tests.support.servers import ThreadedServer

JUN = "3f9a6b1c-2d4e-4f50-8a71-b2c3d4e5f607"
JOBS_SECRET = "jobs-secret-0123456789-abcdefghijklmnopqrst"
POSTING_SCOPES = ("user.info.basic", "video.publish", "video.upload")
KB = 1024
EMULATOR = {"min_chunk_bytes": 4 * KB, "publish_processing_seconds": 0.3,
            "verified_url_prefixes": ("https://media.example.com/",)}
PUBLISH = "v2/post/publish"


@pytest.fixture
def clients_file(tmp_path: Path) -> Path:
    path = tmp_path / "clients.yaml"
    path.write_text(f"""
clients:
  - client_id: jobs
    client_secret_sha256: {secret_digest(JOBS_SECRET)}
    scopes: [tiktok.proxy]
""")
    return path


def posting_stack(base: Settings, clients_file: Path, **options: Any) -> Iterator[Stack]:
    with live_stack(base.with_overrides(clients_file=clients_file), scopes=POSTING_SCOPES,
                    **{**EMULATOR, **options}) as stack:
        yield stack


@pytest.fixture
def stack(base_settings: Settings, clients_file: Path) -> Iterator[Stack]:
    yield from posting_stack(base_settings, clients_file)


def sign_in(stack: Stack, browser: Browser, *, user: str = ALICE,
            scopes: tuple[str, ...] = POSTING_SCOPES) -> tuple[str, str]:
    """(access JWT, sub) after a login in which the person grants `scopes`."""
    page = browser.get(f"{stack.broker.url}/login?prompt=login")
    assert browser.consent(page, user=user, scopes=scopes).status_code == 200
    check = browser.client.get(f"{stack.broker.url}/auth/verify")
    assert check.status_code == 200
    return check.headers["authorization"].removeprefix("Bearer "), check.headers["x-auth-request-user"]


def as_user(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def as_service(sub: str) -> dict[str, str]:
    basic = base64.b64encode(f"jobs:{JOBS_SECRET}".encode()).decode()
    return {"Authorization": f"Basic {basic}", "X-Broker-Subject": sub}


def post(stack: Stack, path: str, headers: dict[str, str], body: object = None) -> httpx.Response:
    return httpx.post(f"{stack.broker.url}/tiktok/{PUBLISH}/{path}", json=body, headers=headers, timeout=10)


def video_init(size: int, chunk: int, privacy: str = "SELF_ONLY") -> dict[str, Any]:
    return {"post_info": {"privacy_level": privacy, "title": "Made through the broker"},
            "source_info": {"source": "FILE_UPLOAD", "video_size": size, "chunk_size": chunk,
                            "total_chunk_count": size // chunk}}


def put_chunks(upload_url: str, data: bytes, chunk: int) -> list[int]:
    total = len(data) // chunk
    statuses = []
    for index in range(total):
        first, last = index * chunk, len(data) - 1 if index == total - 1 else (index + 1) * chunk - 1
        answer = httpx.put(upload_url, content=data[first:last + 1], headers={
            "Content-Type": "video/mp4", "Content-Range": f"bytes {first}-{last}/{len(data)}"})
        statuses.append(answer.status_code)
    return statuses


def wait_for_status(stack: Stack, headers: dict[str, str], publish_id: str, *, until: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        answer = post(stack, "status/fetch/", headers, {"publish_id": publish_id})
        assert answer.status_code == 200, answer.text
        data: dict[str, Any] = answer.json()["data"]
        if data["status"] == until or time.monotonic() > deadline:
            return data
        time.sleep(0.1)


def calls(stack: Stack) -> int:
    return len(stack.tiktok.calls)


@pytest.mark.parametrize("caller", ["service", "user"])
def test_a_video_goes_up_in_chunks_and_is_published(stack: Stack, browser: Browser, caller: str) -> None:
    token, sub = sign_in(stack, browser)
    headers = as_service(sub) if caller == "service" else as_user(token)
    creator = post(stack, "creator_info/query/", headers)
    assert creator.status_code == 200, creator.text
    assert creator.json()["data"]["privacy_level_options"][0] == "PUBLIC_TO_EVERYONE"
    data = fake_video(40 * KB + 77)  # four chunks of 10 KB, the last one with the 77 extra bytes
    init = post(stack, "video/init/", headers, video_init(len(data), 10 * KB, "PUBLIC_TO_EVERYONE"))
    assert init.status_code == 200, init.text
    publish_id, upload_url = init.json()["data"]["publish_id"], init.json()["data"]["upload_url"]
    [emulated] = stack.tiktok.posts.all()
    assert upload_url == stack.tiktok.posts.upload_url(emulated)  # passed back unchanged, straight to TikTok
    assert put_chunks(upload_url, data, 10 * KB) == [206, 206, 206, 201]
    assert emulated.received.hexdigest() == hashlib.sha256(data).hexdigest()
    done = wait_for_status(stack, headers, publish_id, until="PUBLISH_COMPLETE")
    assert done["status"] == "PUBLISH_COMPLETE" and done["uploaded_bytes"] == len(data)
    assert len(done["publicaly_available_post_id"]) == 1
    # TikTok saw the user's own TikTok token on every call, never a broker credential.
    seen = {c["token"] for c in stack.tiktok.calls if c["endpoint"] in ("creator_info", "video_init", "status_fetch")}
    assert len(seen) == 1 and next(iter(seen)).startswith("act.")


def test_each_refusal_costs_no_tiktok_call(stack: Stack, browser: Browser) -> None:
    token, _ = sign_in(stack, browser)
    headers = as_user(token)
    before = calls(stack)
    bad_privacy = post(stack, "video/init/", headers, video_init(8 * KB, 8 * KB, "EVERYONE"))
    assert bad_privacy.status_code == 400
    assert bad_privacy.json()["error"] == "invalid_request"
    assert "post_info.privacy_level" in bad_privacy.json()["error_description"]
    bad_chunks = {**video_init(50 * KB, 10 * KB), "source_info": {
        "source": "FILE_UPLOAD", "video_size": 50 * KB, "chunk_size": 10 * KB, "total_chunk_count": 6}}
    assert "total_chunk_count" in post(stack, "video/init/", headers, bad_chunks).json()["error_description"]
    unknown = post(stack, "status/fetch/", headers, {"publish_id": "v_pub_file~v2.123"})
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    assert calls(stack) == before


def test_posting_needs_the_scope_the_user_granted(stack: Stack, browser: Browser) -> None:
    token, _ = sign_in(stack, browser, scopes=("user.info.basic", "video.upload"))  # no video.publish
    before = calls(stack)
    for path, body in (("creator_info/query/", None), ("video/init/", video_init(8 * KB, 8 * KB))):
        refused = post(stack, path, as_user(token), body)
        assert refused.status_code == 403 and refused.json()["error"] == "insufficient_scope"
        assert "video.publish" in refused.json()["error_description"]
    assert calls(stack) == before
    inbox = post(stack, "inbox/video/init/", as_user(token), {"source_info": video_init(8 * KB, 8 * KB)["source_info"]})
    assert inbox.status_code == 200, inbox.text  # video.upload was granted


def test_tiktok_s_limit_per_user_is_applied_before_tiktok(stack: Stack, browser: Browser) -> None:
    token, sub = sign_in(stack, browser)
    answers = [post(stack, "video/init/", as_user(token), video_init(8 * KB, 8 * KB)) for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 6
    before = calls(stack)
    for headers in (as_user(token), as_service(sub)):  # every caller of this user shares TikTok's limit
        refused = post(stack, "video/init/", headers, video_init(8 * KB, 8 * KB))
        assert refused.status_code == 429 and refused.json()["error"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert calls(stack) == before
    # The other paths keep their own limits.
    assert post(stack, "creator_info/query/", as_user(token)).status_code == 200


def test_only_the_user_s_own_publish_ids_can_be_queried(stack: Stack) -> None:
    alice, bob = Browser(), Browser()
    try:
        alice_token, _ = sign_in(stack, alice)
        jun_token, jun_sub = sign_in(stack, bob, user=JUN)
        publish_id = post(stack, "video/init/", as_user(alice_token), video_init(8 * KB, 8 * KB)).json()["data"][
            "publish_id"]
        assert post(stack, "status/fetch/", as_user(alice_token), {"publish_id": publish_id}).status_code == 200
        before = calls(stack)
        for headers in (as_user(jun_token), as_service(jun_sub)):
            refused = post(stack, "status/fetch/", headers, {"publish_id": publish_id})
            assert refused.status_code == 404 and refused.json()["error"] == "not_found"
        assert calls(stack) == before
    finally:
        alice.close()
        bob.close()


def test_deleting_the_account_deletes_its_posts_records(stack: Stack, browser: Browser,
                                                        redis_sync: redis.Redis) -> None:
    token, sub = sign_in(stack, browser)
    assert post(stack, "video/init/", as_user(token), video_init(8 * KB, 8 * KB)).status_code == 200
    assert redis_sync.exists(f"broker:{{u:{sub}}}:posts") == 1
    assert httpx.delete(f"{stack.broker.url}/account", headers=as_user(token)).status_code == 200
    left = [key for key in redis_sync.keys("*") if sub in key and not key.startswith("broker:{events}")]
    assert left == [f"broker:{{u:{sub}}}:deleted"]  # the short-lived marker only (see the deletion tests)


@pytest.fixture
def event_sink() -> Iterator[tuple[Receiver, ThreadedServer]]:
    """A downstream service's webhook endpoint (BROKER_WEBHOOK_URLS), recording the event tokens it gets."""
    sink = Receiver()
    server = ThreadedServer(sink.app()).start()
    yield sink, server
    server.stop()


def test_the_downstream_event_arrives_once_although_tiktok_delivers_twice(
        base_settings: Settings, clients_file: Path, event_sink: tuple[Receiver, ThreadedServer],
        redis_sync: redis.Redis) -> None:
    sink, sink_server = event_sink
    settings = base_settings.with_overrides(webhook_urls=(f"{sink_server.url}/events",))
    for stack in posting_stack(settings, clients_file, tiktok_webhooks=True, webhook_duplicate_delivery=True):
        browser = Browser()
        try:
            _, sub = sign_in(stack, browser)
        finally:
            browser.close()
        data = fake_video(24 * KB)
        init = post(stack, "video/init/", as_service(sub), video_init(len(data), 8 * KB, "PUBLIC_TO_EVERYONE"))
        publish_id, upload_url = init.json()["data"]["publish_id"], init.json()["data"]["upload_url"]
        assert put_chunks(upload_url, data, 8 * KB) == [206, 206, 201]
        post_id = str(wait_for_status(stack, as_service(sub), publish_id, until="PUBLISH_COMPLETE")[
            "publicaly_available_post_id"][0])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (len(stack.tiktok.webhooks.deliveries) < 4 or len(sink.tokens) < 2):
            time.sleep(0.05)
        # TikTok delivered each of its two events twice, and the broker acknowledged every delivery ...
        delivered = [(d.event, d.duplicate, d.status) for d in stack.tiktok.webhooks.deliveries]
        assert sorted(delivered) == sorted([("post.publish.complete", False, 200), ("post.publish.complete", True, 200),
                                            ("post.publish.publicly_available", False, 200),
                                            ("post.publish.publicly_available", True, 200)])
        # ... and passed each on once (in either order: TikTok promises none): in the events stream ...
        events = sorted((fields["type"], json.loads(fields["data"])) for _, fields in redis_sync.xrange(
            "broker:{events}") if fields["type"].startswith("tiktok.post."))
        assert events == [
            ("tiktok.post.complete", {"publish_id": publish_id, "publish_type": "DIRECT_PUBLISH", "client_id": "jobs"}),
            ("tiktok.post.publicly_available", {"publish_id": publish_id, "publish_type": "DIRECT_PUBLISH",
                                                "post_id": post_id, "client_id": "jobs"})]
        # ... and to the webhook receiver, as signed event tokens naming the broker user.
        time.sleep(0.5)  # room for a second delivery, which must not come
        claims = [jwt.decode(token, options={"verify_signature": False}) for token in sink.tokens]
        assert sorted(next(iter(c["events"])).rsplit("/", 1)[1] for c in claims) == [
            "tiktok.post.complete", "tiktok.post.publicly_available"]
        assert all(c["sub"] == sub for c in claims)
        metrics = httpx.get(f"{stack.broker.url}/metrics").text
        assert 'broker_tiktok_webhooks_total{outcome="processed"} 2.0' in metrics
        assert 'broker_tiktok_webhooks_total{outcome="duplicate"} 2.0' in metrics


def test_the_sdk_posts_uploads_and_polls_for_a_service_and_for_a_user(stack: Stack, browser: Browser,
                                                                       tmp_path: Path) -> None:
    token, sub = sign_in(stack, browser)
    video = tmp_path / "clip.mp4"
    video.write_bytes(fake_video(30 * KB + 5))
    stack.tiktok.set_fault("upload", "http_500", count=1)  # one chunk fails once: the SDK sends it again
    small: dict[str, Any] = {"chunk_size": 8 * KB, "min_chunk_size": 4 * KB, "poll_interval": 0.1,
                             "wait_seconds": 10}

    async def use() -> list[PostResult]:
        async with BrokerTikTok(stack.broker.url, client_id="jobs", client_secret=JOBS_SECRET) as service:
            direct = await service.post_video(sub, video, {"privacy_level": "SELF_ONLY", "title": "From a job"},
                                              **small)
            drafts = await service.upload_to_inbox(token, video.read_bytes(), **small)
            photos = await service.post_photos(sub, ["https://media.example.com/1.jpg",
                                                     "https://media.example.com/2.jpg"],
                                               {"privacy_level": "PUBLIC_TO_EVERYONE", "title": "Two photos"},
                                               cover_index=1, poll_interval=0.1, wait_seconds=10)
            with pytest.raises(BrokerApiError) as mismatch:
                await service.post_video(sub, video, {"privacy_level": "FOLLOWER_OF_CREATOR"}, **small)
            assert mismatch.value.code == "privacy_level_option_mismatch"
        return [direct, drafts, photos]

    direct, drafts, photos = asyncio.run(use())
    assert (direct.status, drafts.status, photos.status) == ("PUBLISH_COMPLETE", "SEND_TO_USER_INBOX",
                                                             "PUBLISH_COMPLETE")
    assert direct.uploaded_bytes == video.stat().st_size and len(photos.post_ids) == 1
    uploaded = [p for p in stack.tiktok.posts.all() if p.source == "FILE_UPLOAD"]
    assert [p.received.hexdigest() for p in uploaded] == [hashlib.sha256(video.read_bytes()).hexdigest()] * 2
    assert [p.chunks for p in uploaded] == [3, 3]  # 8 KB chunks, the last with the remainder
    upload_calls = [c["status"] for c in stack.tiktok.calls if c["endpoint"] == "upload"]
    assert upload_calls.count(500) == 1 and len(upload_calls) == 7  # six chunks, one of them twice
    assert len([c for c in stack.tiktok.calls if c["endpoint"] == "video_init"]) == 1  # not for the mismatch
