"""TikTok's Content Posting API as the proxy sees it: its paths, scopes and per-user limits, and the body checks
that refuse an obviously wrong request (400 naming the field) before it costs a TikTok call.

The checks are the documented shapes and sizes only. What needs TikTok's knowledge (the creator's privacy
options, verified URL prefixes, the 5 MB minimum chunk, daily caps) stays TikTok's to refuse.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeGuard

from broker.errors import InvalidRequest

CREATOR_INFO = "/v2/post/publish/creator_info/query/"
VIDEO_INIT = "/v2/post/publish/video/init/"
INBOX_INIT = "/v2/post/publish/inbox/video/init/"
CONTENT_INIT = "/v2/post/publish/content/init/"
STATUS_FETCH = "/v2/post/publish/status/fetch/"
POSTING_PATHS = (CREATOR_INFO, VIDEO_INIT, INBOX_INIT, CONTENT_INIT, STATUS_FETCH)
VIDEO_PUBLISH, VIDEO_UPLOAD = "video.publish", "video.upload"
# TikTok's limits per user access token, requests per minute.
TIKTOK_LIMITS = {CREATOR_INFO: 20, VIDEO_INIT: 6, INBOX_INIT: 6, CONTENT_INIT: 6, STATUS_FETCH: 30}

PRIVACY_LEVELS = ("PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "FOLLOWER_OF_CREATOR", "SELF_ONLY")
FLAGS = ("disable_duet", "disable_stitch", "disable_comment", "brand_content_toggle", "brand_organic_toggle",
         "is_aigc", "auto_add_music")
MB = 1024 * 1024
MAX_CHUNK, MAX_CHUNKS = 64 * MB, 1000
VIDEO_TITLE, PHOTO_TITLE, PHOTO_DESCRIPTION = 2200, 90, 4000  # UTF-16 code units
MAX_PHOTOS, MAX_URL, MAX_PUBLISH_ID = 35, 2048, 64


@dataclass(frozen=True)
class PostingCall:
    """A checked Content Posting request."""

    path: str
    scopes: tuple[str, ...]  # the TikTok scopes it needs (a status fetch: the scope its post was made with)
    kind: str = ""  # what an init creates: "video" (direct post), "inbox" or "photo"
    publish_id: str = ""  # the post a status fetch asks about


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def utf16_units(text: str) -> int:
    """How TikTok counts title lengths."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _object(value: object, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest(f"{name} must be a JSON object.")
    return value


def _text(info: dict[str, Any], name: str, limit: int, prefix: str) -> None:
    value = info.get(name, "")
    if not isinstance(value, str) or utf16_units(value) > limit:
        raise InvalidRequest(f"{prefix}.{name} must be a string of at most {limit} characters (UTF-16 units).")


def _url(value: object, name: str) -> None:
    if not isinstance(value, str) or not value.startswith(("https://", "http://")) or len(value) > MAX_URL:
        raise InvalidRequest(f"{name} must be an http(s) URL of at most {MAX_URL} characters.")


def check_post_info(info: dict[str, Any], *, privacy_required: bool, title_limit: int,
                    description_limit: int | None = None) -> None:
    level = info.get("privacy_level")
    if (privacy_required or level is not None) and level not in PRIVACY_LEVELS:
        raise InvalidRequest(f"post_info.privacy_level must be one of {', '.join(PRIVACY_LEVELS)}.")
    _text(info, "title", title_limit, "post_info")
    if description_limit is not None:
        _text(info, "description", description_limit, "post_info")
    for flag in FLAGS:
        if flag in info and not isinstance(info[flag], bool):
            raise InvalidRequest(f"post_info.{flag} must be true or false.")
    stamp = info.get("video_cover_timestamp_ms", 0)
    if not _is_int(stamp) or stamp < 0:
        raise InvalidRequest("post_info.video_cover_timestamp_ms must be a whole number of milliseconds.")


def check_chunks(video_size: object, chunk_size: object, total: object) -> None:
    """The arithmetic of the media transfer guide: total_chunk_count = floor(video_size / chunk_size), 1 to 1,000
    chunks of at most 64 MB (the last one takes the remainder). TikTok's 5 MB minimum is left to TikTok."""
    for name, value in (("video_size", video_size), ("chunk_size", chunk_size), ("total_chunk_count", total)):
        if not _is_int(value) or value < 1:
            raise InvalidRequest(f"source_info.{name} must be a positive whole number.")
    assert _is_int(video_size) and _is_int(chunk_size) and _is_int(total)
    if chunk_size > video_size or chunk_size > MAX_CHUNK:
        raise InvalidRequest(f"source_info.chunk_size must be at most video_size and at most {MAX_CHUNK} bytes.")
    if total != video_size // chunk_size:
        raise InvalidRequest(f"source_info.total_chunk_count must be floor(video_size / chunk_size) = "
                             f"{video_size // chunk_size}.")
    if total > MAX_CHUNKS:
        raise InvalidRequest(f"source_info.total_chunk_count must be at most {MAX_CHUNKS}: use larger chunks.")


def check_video_source(body: dict[str, Any]) -> None:
    info = _object(body.get("source_info"), "source_info")
    source = info.get("source")
    if source == "FILE_UPLOAD":
        check_chunks(info.get("video_size"), info.get("chunk_size"), info.get("total_chunk_count"))
    elif source == "PULL_FROM_URL":
        _url(info.get("video_url"), "source_info.video_url")
    else:
        raise InvalidRequest("source_info.source must be FILE_UPLOAD or PULL_FROM_URL.")


def check_photo_init(body: dict[str, Any]) -> str:
    """A photo post's body; answers the scope its post_mode needs."""
    if body.get("media_type") != "PHOTO":
        raise InvalidRequest("media_type must be PHOTO.")
    mode = body.get("post_mode")
    if mode not in ("DIRECT_POST", "MEDIA_UPLOAD"):
        raise InvalidRequest("post_mode must be DIRECT_POST or MEDIA_UPLOAD.")
    check_post_info(_object(body.get("post_info", {}), "post_info"), privacy_required=mode == "DIRECT_POST",
                    title_limit=PHOTO_TITLE, description_limit=PHOTO_DESCRIPTION)
    info = _object(body.get("source_info"), "source_info")
    if info.get("source") != "PULL_FROM_URL":
        raise InvalidRequest("source_info.source must be PULL_FROM_URL for photos.")
    images = info.get("photo_images")
    if not isinstance(images, list) or not 1 <= len(images) <= MAX_PHOTOS:
        raise InvalidRequest(f"source_info.photo_images must list 1 to {MAX_PHOTOS} image URLs.")
    for image in images:
        _url(image, "source_info.photo_images")
    cover = info.get("photo_cover_index", 0)
    if not _is_int(cover) or not 0 <= cover < len(images):
        raise InvalidRequest("source_info.photo_cover_index must be the index of one of photo_images.")
    return VIDEO_PUBLISH if mode == "DIRECT_POST" else VIDEO_UPLOAD


def _members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose members are named once each. The body goes to TikTok as it is, and parsers disagree on
    a repeated member (Python keeps the last, others the first): the value checked must be the one TikTok reads."""
    members: dict[str, Any] = {}
    for name, value in pairs:
        if name in members:
            raise InvalidRequest(f"The member {name[:64]} appears more than once in a JSON object of the body.")
        members[name] = value
    return members


def _json_body(raw: bytes, *, empty_ok: bool = False) -> dict[str, Any]:
    if empty_ok and not raw.strip():
        return {}
    try:
        body = json.loads(raw, object_pairs_hook=_members)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes (still under 1 MiB)
        raise InvalidRequest("The body must be a JSON object.") from None
    return _object(body, "The body")


def check_posting_call(path: str, raw: bytes) -> PostingCall | None:
    """The Content Posting request on `path`, checked; None for paths of other APIs."""
    if path == CREATOR_INFO:
        _json_body(raw, empty_ok=True)
        return PostingCall(path, (VIDEO_PUBLISH,))
    if path == VIDEO_INIT:
        body = _json_body(raw)
        check_post_info(_object(body.get("post_info"), "post_info"), privacy_required=True, title_limit=VIDEO_TITLE)
        check_video_source(body)
        return PostingCall(path, (VIDEO_PUBLISH,), kind="video")
    if path == INBOX_INIT:
        check_video_source(_json_body(raw))
        return PostingCall(path, (VIDEO_UPLOAD,), kind="inbox")
    if path == CONTENT_INIT:
        return PostingCall(path, (check_photo_init(_json_body(raw)),), kind="photo")
    if path == STATUS_FETCH:
        publish_id = _json_body(raw).get("publish_id")
        if not isinstance(publish_id, str) or not 1 <= len(publish_id) <= MAX_PUBLISH_ID:
            raise InvalidRequest(f"publish_id must be a string of 1 to {MAX_PUBLISH_ID} characters.")
        return PostingCall(path, (), publish_id=publish_id)
    return None
