"""The SDK's posting half in isolation: TikTok's chunk arithmetic, reading the file, and the error handling of the
chunk PUTs and of naming the user (httpx.MockTransport stands in for TikTok's upload host and the broker)."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import httpx
import pytest

from broker_sdk.tiktok import BrokerApiError, BrokerTikTok, PostResult
from broker_sdk.tiktok_media import (
    ChunkPlan,
    Media,
    UploadFailed,
    content_type_for,
    plan_chunks,
    send_chunks,
)

MB = 1024 * 1024
UPLOAD_URL = "https://upload.example/video/?upload_id=1&upload_token=t"
JWT = "header.payload.signature"
SUB = "A" * 22


def test_tiktok_s_worked_example_and_the_edges_of_the_rules() -> None:
    example = plan_chunks(50_000_123, 10_000_000)  # the media transfer guide's own example
    assert example == ChunkPlan(50_000_123, 10_000_000, 5)
    assert list(example.ranges())[-1] == (40_000_000, 50_000_122)  # the 123 trailing bytes join the last chunk
    assert plan_chunks(3 * MB) == ChunkPlan(3 * MB, 3 * MB, 1)  # under 5 MB: whole
    assert plan_chunks(3 * MB, 1 * MB) == ChunkPlan(3 * MB, 3 * MB, 1)  # even when asked for smaller chunks
    assert plan_chunks(12 * MB, 1 * MB) == ChunkPlan(12 * MB, 5 * MB, 2)  # never under 5 MB
    assert plan_chunks(8 * MB) == ChunkPlan(8 * MB, 8 * MB, 1)  # no larger than one chunk: whole
    assert plan_chunks(100 * MB, 64 * MB) == ChunkPlan(100 * MB, 50 * MB, 2)  # over 64 MB: at least two
    assert plan_chunks(300 * MB, 200 * MB).chunk_size == 64 * MB  # never over 64 MB
    huge = plan_chunks(20_000 * MB, 5 * MB)  # 4,000 chunks of 5 MB would be too many
    assert huge.total_chunk_count <= 1000 and huge.chunk_size <= 64 * MB
    for plan in (example, huge, plan_chunks(64 * MB + 1, 64 * MB), plan_chunks(7 * MB + 3, 5 * MB)):
        ranges = list(plan.ranges())
        assert ranges[0][0] == 0 and ranges[-1][1] == plan.video_size - 1
        assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(ranges))
        assert plan.total_chunk_count == plan.video_size // plan.chunk_size
        assert ranges[-1][1] - ranges[-1][0] + 1 <= 128 * MB
    assert plan_chunks(40 * 1024, 8 * 1024, min_chunk=4 * 1024) == ChunkPlan(40 * 1024, 8 * 1024, 5)
    with pytest.raises(ValueError, match="larger than TikTok takes"):
        plan_chunks(1000 * 64 * MB + 1)
    with pytest.raises(ValueError):
        plan_chunks(0)
    with pytest.raises(ValueError):
        plan_chunks(MB, min_chunk=6 * MB)


def test_media_from_bytes_paths_and_open_files(tmp_path: Path) -> None:
    path = tmp_path / "clip.MOV"
    path.write_bytes(b"0123456789")
    for source in (b"0123456789", path, str(path), io.BytesIO(b"0123456789")):
        media = Media(source)
        assert media.size == 10
        media.close()
    assert Media(path).name == str(path) and content_type_for(str(path)) == "video/quicktime"
    assert content_type_for("a.webm") == "video/webm" and content_type_for(None) == "video/mp4"


class FlakyUpload:
    """TikTok's upload host: answers each PUT from a script of statuses (or errors), recording what came."""

    def __init__(self, *answers: int | type[Exception]) -> None:
        self.answers = list(answers)
        self.puts: list[tuple[str, bytes]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.puts.append((request.headers["content-range"], request.content))
        assert "authorization" not in request.headers  # no broker credential goes to TikTok's upload host
        answer = self.answers.pop(0) if self.answers else 206
        if isinstance(answer, type):
            raise answer("no answer", request=request)
        return httpx.Response(answer, json={})


async def send(upload: FlakyUpload, data: bytes, plan: ChunkPlan) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(upload)) as http:
        await send_chunks(http, UPLOAD_URL, Media(data), plan, "video/mp4", backoff=0.001)


async def test_a_failed_chunk_is_sent_again_and_the_rest_follow_in_order() -> None:
    upload = FlakyUpload(206, 500, httpx.ReadTimeout, 206, 201)
    data = bytes(range(256)) * 10
    await send(upload, data, ChunkPlan(len(data), 1000, 2))
    assert [put[0] for put in upload.puts] == ["bytes 0-999/2560", "bytes 1000-2559/2560", "bytes 1000-2559/2560",
                                               "bytes 1000-2559/2560"]
    assert upload.puts[0][1] == data[:1000] and upload.puts[-1][1] == data[1000:]


async def test_a_refused_chunk_stops_the_upload_and_retries_have_an_end() -> None:
    refused = FlakyUpload(206, 416)
    with pytest.raises(UploadFailed) as stopped:
        await send(refused, b"x" * 2000, ChunkPlan(2000, 1000, 2))
    assert stopped.value.status == 416 and len(refused.puts) == 2  # no retry of a refusal
    failing = FlakyUpload(*([503] * 10))
    with pytest.raises(UploadFailed, match="failed 4 times"):
        await send(failing, b"x" * 1000, ChunkPlan(1000, 1000, 1))
    assert len(failing.puts) == 4


async def test_each_call_names_its_user_by_token_or_by_subject() -> None:
    seen: list[dict[str, str]] = []

    def broker(request: httpx.Request) -> httpx.Response:
        seen.append({k: v for k, v in request.headers.items() if k in ("authorization", "x-broker-subject")})
        return httpx.Response(200, json={"data": {"status": "PROCESSING_UPLOAD"}, "error": {"code": "ok"}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(broker)) as http:
        service = BrokerTikTok("https://auth.example", client_id="jobs", client_secret="s3cret", http=http)
        assert await service.post_status(SUB, "v.1") == PostResult(
            "v.1", "PROCESSING_UPLOAD", raw={"status": "PROCESSING_UPLOAD"})
        await service.post_status(JWT, "v.1")
        with pytest.raises(ValueError, match="name the user"):
            await service.post_status(None, "v.1")
        user = BrokerTikTok("https://auth.example", token=JWT, http=http)
        await user.post_status(None, "v.1")
        with pytest.raises(ValueError, match="name the user"):
            await user.post_status(SUB, "v.1")  # a subject needs a service credential
    assert seen[0] == {"authorization": "Basic am9iczpzM2NyZXQ=", "x-broker-subject": SUB}
    assert seen[1] == seen[2] == {"authorization": f"Bearer {JWT}"}


async def test_a_privacy_level_the_creator_does_not_offer_is_refused_before_the_init() -> None:
    paths: list[str] = []

    def broker(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(200, json={"data": {"privacy_level_options": ["SELF_ONLY"]}, "error": {"code": "ok"}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(broker)) as http:
        client = BrokerTikTok("https://auth.example", token=JWT, http=http)
        with pytest.raises(BrokerApiError) as refused:
            await client.post_video(None, b"video", {"privacy_level": "PUBLIC_TO_EVERYONE"})
    assert refused.value.code == "privacy_level_option_mismatch" and "SELF_ONLY" in refused.value.message
    assert paths == ["/tiktok/v2/post/publish/creator_info/query/"]


async def test_status_polling_waits_out_a_429_and_stops_at_the_deadline() -> None:
    answers = [httpx.Response(429, headers={"Retry-After": "0"}, json={"error": "rate_limited"}),
               httpx.Response(200, json={"data": {"status": "PUBLISH_COMPLETE",
                                                  "publicaly_available_post_id": [7312345678901234567]},
                                         "error": {"code": "ok"}})]

    def broker(request: httpx.Request) -> httpx.Response:
        assert json.loads(request.content) == {"publish_id": "v.1"}
        return answers.pop(0) if answers else httpx.Response(
            200, json={"data": {"status": "PROCESSING_UPLOAD"}, "error": {"code": "ok"}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(broker)) as http:
        client = BrokerTikTok("https://auth.example", token=JWT, http=http)
        done = await client.wait_for_post(None, "v.1", poll_interval=0.01)
        assert done.done and done.post_ids == ("7312345678901234567",)
        pending = await client.wait_for_post(None, "v.1", poll_interval=0.01, wait_seconds=0.05)
        assert not pending.done and pending.status == "PROCESSING_UPLOAD"
