"""What TikTok checks in a Content Posting init body: post_info, source_info, the chunk rules and photo lists."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeGuard

from tiktok_emulator.config import MB, EmulatorConfig
from tiktok_emulator.posts import FILE_UPLOAD, PRIVACY_LEVELS, PULL_FROM_URL

MAX_CHUNK = 64 * MB
MAX_LAST_CHUNK = 128 * MB
MAX_CHUNKS = 1000
VIDEO_TITLE = 2200  # UTF-16 code units
PHOTO_TITLE, PHOTO_DESCRIPTION, MAX_PHOTOS = 90, 4000, 35
FLAGS = ("disable_duet", "disable_stitch", "disable_comment", "brand_content_toggle", "brand_organic_toggle",
         "is_aigc", "auto_add_music")


class Problem(Exception):
    """A refused init: TikTok's error code, a message naming the field, the HTTP status."""

    def __init__(self, message: str, code: str = "invalid_params", status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass(frozen=True)
class Source:
    source: str
    video_size: int = 0
    chunk_size: int = 0
    total_chunk_count: int = 0
    urls: tuple[str, ...] = field(default=())


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def post_info(body: dict[str, Any], *, title_limit: int, privacy_required: bool,
              description_limit: int | None = None) -> dict[str, Any]:
    info = body.get("post_info", {} if not privacy_required else None)
    if not isinstance(info, dict):
        raise Problem("post_info must be a JSON object.")
    level = info.get("privacy_level")
    if privacy_required and level not in PRIVACY_LEVELS:
        raise Problem(f"post_info.privacy_level must be one of {', '.join(PRIVACY_LEVELS)}.")
    title = info.get("title", "")
    if not isinstance(title, str) or utf16_units(title) > title_limit:
        raise Problem(f"post_info.title must be a string of at most {title_limit} UTF-16 units.")
    if description_limit is not None:
        description = info.get("description", "")
        if not isinstance(description, str) or utf16_units(description) > description_limit:
            raise Problem(f"post_info.description must be a string of at most {description_limit} characters.")
    for flag in FLAGS:
        if flag in info and not isinstance(info[flag], bool):
            raise Problem(f"post_info.{flag} must be a boolean.")
    stamp = info.get("video_cover_timestamp_ms", 0)
    if not _is_int(stamp) or stamp < 0:
        raise Problem("post_info.video_cover_timestamp_ms must be a non-negative integer.")
    return info


def _verified(config: EmulatorConfig, url: object, name: str) -> str:
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise Problem(f"{name} must be an http(s) URL.")
    if not any(url.startswith(prefix) for prefix in config.verified_url_prefixes):
        raise Problem(f"The domain or URL prefix of {name} has not been verified by this app.",
                      "url_ownership_unverified", 403)
    return url


def chunk_problem(video_size: int, chunk_size: int, total: int, min_chunk: int) -> str | None:
    """The media transfer guide's chunk rules, or None when the plan follows them."""
    if video_size < 1 or chunk_size < 1 or total < 1:
        return "video_size, chunk_size and total_chunk_count must be positive integers."
    if video_size < min_chunk and (chunk_size != video_size or total != 1):
        return f"A video under {min_chunk} bytes is uploaded whole: chunk_size = video_size, total_chunk_count = 1."
    if video_size >= min_chunk and not min_chunk <= chunk_size <= MAX_CHUNK:
        return f"chunk_size must be between {min_chunk} and {MAX_CHUNK} bytes."
    if chunk_size > video_size:
        return "chunk_size must not exceed video_size."
    if total != video_size // chunk_size:
        return "total_chunk_count must equal video_size / chunk_size, rounded down."
    if total > MAX_CHUNKS:
        return f"At most {MAX_CHUNKS} chunks."
    if video_size - (total - 1) * chunk_size > MAX_LAST_CHUNK:
        return f"The last chunk may hold at most {MAX_LAST_CHUNK} bytes."
    if video_size > MAX_CHUNK and total < 2:
        return f"A video over {MAX_CHUNK} bytes must be uploaded in several chunks."
    return None


def video_source(config: EmulatorConfig, body: dict[str, Any]) -> Source:
    info = body.get("source_info")
    if not isinstance(info, dict):
        raise Problem("source_info must be a JSON object.")
    source = info.get("source")
    if source == FILE_UPLOAD:
        video_size, chunk_size, total = (info.get(name) for name in ("video_size", "chunk_size", "total_chunk_count"))
        if not (_is_int(video_size) and _is_int(chunk_size) and _is_int(total)):
            raise Problem("source_info.video_size, chunk_size and total_chunk_count are required integers.")
        problem = chunk_problem(video_size, chunk_size, total, config.min_chunk_bytes)
        if problem:
            raise Problem(f"source_info: {problem}")
        return Source(FILE_UPLOAD, video_size, chunk_size, total)
    if source == PULL_FROM_URL:
        return Source(PULL_FROM_URL, urls=(_verified(config, info.get("video_url"), "source_info.video_url"),))
    raise Problem("source_info.source must be FILE_UPLOAD or PULL_FROM_URL.")


def photo_source(config: EmulatorConfig, body: dict[str, Any]) -> Source:
    info = body.get("source_info")
    if not isinstance(info, dict) or info.get("source") != PULL_FROM_URL:
        raise Problem("source_info.source must be PULL_FROM_URL for photos.")
    images = info.get("photo_images")
    if not isinstance(images, list) or not 1 <= len(images) <= MAX_PHOTOS:
        raise Problem(f"source_info.photo_images must list 1 to {MAX_PHOTOS} image URLs.")
    urls = tuple(_verified(config, url, "source_info.photo_images") for url in images)
    cover = info.get("photo_cover_index", 0)
    if not _is_int(cover) or not 0 <= cover < len(urls):
        raise Problem("source_info.photo_cover_index must be the index of one of photo_images.")
    return Source(PULL_FROM_URL, urls=urls)
