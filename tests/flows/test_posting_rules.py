"""The proxy's checks of Content Posting bodies: shapes and sizes refused with a 400 naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from broker.errors import InvalidRequest
from broker.flows.posting_rules import (
    CONTENT_INIT,
    CREATOR_INFO,
    INBOX_INIT,
    STATUS_FETCH,
    VIDEO_INIT,
    PostingCall,
    check_posting_call,
    utf16_units,
)
from broker.flows.tiktok_posting import published_id

MB = 1024 * 1024
VIDEO = {"post_info": {"privacy_level": "SELF_ONLY", "title": "Hello", "disable_duet": False,
                       "video_cover_timestamp_ms": 1000},
         "source_info": {"source": "FILE_UPLOAD", "video_size": 50_000_123, "chunk_size": 10_000_000,
                         "total_chunk_count": 5}}
PHOTOS = {"media_type": "PHOTO", "post_mode": "DIRECT_POST", "post_info": {"privacy_level": "SELF_ONLY"},
          "source_info": {"source": "PULL_FROM_URL", "photo_images": ["https://media.example.com/1.jpg"],
                          "photo_cover_index": 0}}


def checked(path: str, body: object) -> PostingCall | None:
    return check_posting_call(path, json.dumps(body).encode())


def refusal(path: str, body: object) -> str:
    with pytest.raises(InvalidRequest) as refused:
        checked(path, body)
    return refused.value.description


def changed(base: dict[str, Any], part: str, **fields: object) -> dict[str, Any]:
    return {**base, part: {**base[part], **fields}}


def test_each_posting_path_names_the_scope_it_needs() -> None:
    assert check_posting_call(CREATOR_INFO, b"") == PostingCall(CREATOR_INFO, ("video.publish",))
    assert checked(CREATOR_INFO, {}) == PostingCall(CREATOR_INFO, ("video.publish",))
    assert checked(VIDEO_INIT, VIDEO) == PostingCall(VIDEO_INIT, ("video.publish",), kind="video")
    assert checked(INBOX_INIT, {"source_info": VIDEO["source_info"]}) == PostingCall(INBOX_INIT, ("video.upload",),
                                                                                     kind="inbox")
    assert checked(CONTENT_INIT, PHOTOS) == PostingCall(CONTENT_INIT, ("video.publish",), kind="photo")
    drafts = {**PHOTOS, "post_mode": "MEDIA_UPLOAD", "post_info": {}}
    assert checked(CONTENT_INIT, drafts) == PostingCall(CONTENT_INIT, ("video.upload",), kind="photo")
    assert checked(STATUS_FETCH, {"publish_id": "v_pub_file~v2.1"}) == PostingCall(
        STATUS_FETCH, (), publish_id="v_pub_file~v2.1")
    assert check_posting_call("/v2/user/info/", b"anything") is None


@pytest.mark.parametrize(("body", "field"), [
    ({**VIDEO, "post_info": None}, "post_info"),
    (changed(VIDEO, "post_info", privacy_level="EVERYONE"), "post_info.privacy_level"),
    ({**VIDEO, "post_info": {"title": "no privacy level"}}, "post_info.privacy_level"),
    (changed(VIDEO, "post_info", title="x" * 2201), "post_info.title"),
    (changed(VIDEO, "post_info", title="\U0001f600" * 1101), "post_info.title"),  # 2,202 UTF-16 units
    (changed(VIDEO, "post_info", disable_comment="yes"), "post_info.disable_comment"),
    (changed(VIDEO, "post_info", video_cover_timestamp_ms=-1), "post_info.video_cover_timestamp_ms"),
    ({"post_info": VIDEO["post_info"]}, "source_info"),
    (changed(VIDEO, "source_info", source="UPLOAD"), "source_info.source"),
    (changed(VIDEO, "source_info", video_size="50000123"), "source_info.video_size"),
    (changed(VIDEO, "source_info", chunk_size=0), "source_info.chunk_size"),
    (changed(VIDEO, "source_info", total_chunk_count=6), "source_info.total_chunk_count"),  # must be 5
    (changed(VIDEO, "source_info", chunk_size=65 * MB, video_size=200 * MB, total_chunk_count=3),
     "source_info.chunk_size"),
    (changed(VIDEO, "source_info", chunk_size=60 * MB, video_size=50 * MB, total_chunk_count=0),
     "source_info.total_chunk_count"),
    (changed(VIDEO, "source_info", chunk_size=MB, video_size=1001 * MB, total_chunk_count=1001),
     "source_info.total_chunk_count"),
    ({**VIDEO, "source_info": {"source": "PULL_FROM_URL", "video_url": "ftp://x"}}, "source_info.video_url"),
])
def test_a_video_init_of_the_wrong_shape_names_the_field(body: dict[str, Any], field: str) -> None:
    assert field in refusal(VIDEO_INIT, body)


def test_the_chunk_arithmetic_of_the_media_transfer_guide() -> None:
    for size, chunk in ((50_000_123, 10_000_000), (3 * MB, 3 * MB), (7 * MB, 5 * MB), (64 * MB + 1, 64 * MB),
                        (1000 * 5 * MB, 5 * MB)):
        body = changed(VIDEO, "source_info", video_size=size, chunk_size=chunk, total_chunk_count=size // chunk)
        assert checked(VIDEO_INIT, body) is not None, (size, chunk)
    pull = {**VIDEO, "source_info": {"source": "PULL_FROM_URL", "video_url": "https://media.example.com/v.mp4"}}
    assert checked(VIDEO_INIT, pull) is not None


@pytest.mark.parametrize(("body", "field"), [
    ({**PHOTOS, "media_type": "VIDEO"}, "media_type"),
    ({**PHOTOS, "post_mode": "LATER"}, "post_mode"),
    ({**PHOTOS, "post_info": {}}, "post_info.privacy_level"),  # required for a direct post
    (changed(PHOTOS, "post_info", title="x" * 91), "post_info.title"),
    (changed(PHOTOS, "post_info", description="x" * 4001), "post_info.description"),
    (changed(PHOTOS, "source_info", source="FILE_UPLOAD"), "source_info.source"),
    (changed(PHOTOS, "source_info", photo_images=[]), "source_info.photo_images"),
    (changed(PHOTOS, "source_info", photo_images=["https://m.example/1.jpg"] * 36), "source_info.photo_images"),
    (changed(PHOTOS, "source_info", photo_images=[42]), "source_info.photo_images"),
    (changed(PHOTOS, "source_info", photo_cover_index=1), "source_info.photo_cover_index"),
])
def test_a_photo_init_of_the_wrong_shape_names_the_field(body: dict[str, Any], field: str) -> None:
    assert field in refusal(CONTENT_INIT, body)


def test_bodies_that_are_not_json_objects_and_bad_publish_ids() -> None:
    for path in (VIDEO_INIT, INBOX_INIT, CONTENT_INIT, STATUS_FETCH):
        with pytest.raises(InvalidRequest):
            check_posting_call(path, b"not json")
        assert "JSON object" in refusal(path, [1, 2])
    assert "JSON object" in refusal(CREATOR_INFO, "text")
    for publish_id in (None, "", 7, "x" * 65):
        assert "publish_id" in refusal(STATUS_FETCH, {"publish_id": publish_id})
    assert "source_info" in refusal(INBOX_INIT, {})


def test_titles_count_utf16_units_as_tiktok_does() -> None:
    assert utf16_units("abc") == 3
    assert utf16_units("\U0001f600") == 2
    assert utf16_units("é") == 1


def test_an_init_answer_nested_too_deep_records_no_publish_id() -> None:
    # TikTok's answer is read after the post exists: a garbled one must not turn into a 500.
    assert published_id(b"[" * 100_000) is None
    assert published_id(b'{"error":{"code":"ok"},"data":{"publish_id":"v_pub_1"}}') == "v_pub_1"
