"""`POST /v2/video/list/` and `POST /v2/video/query/` (Display API): a user's own public videos, by page or by id.

Both take `?fields=` like user info, need `video.list`, and answer the data/error envelope; each has its own
600/min window (contract §7).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tiktok_emulator.api_auth import authorize_api_call
from tiktok_emulator.config import TestUser
from tiktok_emulator.endpoint import emulated
from tiktok_emulator.ratelimit import SlidingWindow
from tiktok_emulator.responses import api_error, api_ok
from tiktok_emulator.state import EmulatorState, emulator
from tiktok_emulator.video_seed import SeedVideo, seed_videos

VIDEO_LIST = "video.list"
VIDEO_FIELDS = ("id", "create_time", "cover_image_url", "share_url", "video_description", "duration", "height",
                "width", "title", "embed_html", "embed_link", "like_count", "comment_count", "share_count",
                "view_count")
MAX_COUNT, DEFAULT_COUNT, MAX_IDS = 20, 10, 20


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _serve(state: EmulatorState, user: TestUser, video: SeedVideo, names: list[str]) -> dict[str, Any]:
    """Only the requested, known fields; unknown names are dropped, as user info does."""
    base = state.config.public_url.rstrip("/")
    page = f"{base}/@{user.username}/video/{video.id}"
    values: dict[str, Any] = {
        "id": video.id,
        "create_time": video.create_time,
        # Served by the emulator's avatar route so covers render offline, like avatars do.
        "cover_image_url": f"{base}/_emulator/avatars/{user.open_id}.svg?size=720&video={video.id}",
        "share_url": f"{page}?utm_campaign=tt4d_open_api&utm_source={state.config.client_key}",
        "video_description": video.video_description,
        "duration": video.duration,
        "height": video.height,
        "width": video.width,
        "title": video.title,
        "embed_html": (f'<blockquote class="tiktok-embed" cite="{page}" data-video-id="{video.id}" '
                       f'style="max-width: 605px;min-width: 325px;"><section></section></blockquote>'
                       f'<script async src="{base}/embed.js"></script>'),
        "embed_link": f"{base}/embed/v2/{video.id}",
        "like_count": video.like_count,
        "comment_count": video.comment_count,
        "share_count": video.share_count,
        "view_count": video.view_count,
    }
    return {name: values[name] for name in names if name in values}


async def _authorized(request: Request, window: SlidingWindow
                      ) -> tuple[TestUser, list[str], dict[str, Any]] | Response:
    """What both endpoints check first: the call itself (rate, token, scope, fields), the user, the JSON body."""
    checked = authorize_api_call(request, window, VIDEO_LIST)
    if isinstance(checked, Response):
        return checked
    user = emulator(request).users.get(checked.open_id)
    if user is None:
        return api_error(request, "access_token_invalid", "The user no longer exists.", 401)
    body = await _json_body(request)
    if body is None:
        return _invalid(request, "The request body must be a JSON object.")
    return user, checked.fields, body


async def _json_body(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body())
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _invalid(request: Request, message: str) -> Response:
    return api_error(request, "invalid_params", message, 400)


@emulated("video_list")
async def video_list_endpoint(request: Request) -> Response:
    """Newest first; `cursor` (ms) selects videos created strictly before it; the answer's cursor continues."""
    state = emulator(request)
    checked = await _authorized(request, state.video_list_window)
    if isinstance(checked, Response):
        return checked
    user, names, body = checked
    max_count = body.get("max_count", DEFAULT_COUNT)
    cursor = body.get("cursor")
    if max_count is None:
        max_count = DEFAULT_COUNT
    if not _is_int(max_count) or not 1 <= max_count <= MAX_COUNT:
        return _invalid(request, f"max_count must be an integer from 1 to {MAX_COUNT}.")
    if cursor is not None and (not _is_int(cursor) or cursor < 0):
        return _invalid(request, "cursor must be a non-negative integer (UTC epoch milliseconds).")
    older = [v for v in seed_videos(user.open_id) if cursor is None or v.create_time * 1000 < cursor]
    page = older[:max_count]
    next_cursor = page[-1].create_time * 1000 if page else (cursor or 0)
    return api_ok(request, {"videos": [_serve(state, user, v, names) for v in page], "cursor": next_cursor,
                            "has_more": len(older) > len(page)})


@emulated("video_query")
async def video_query_endpoint(request: Request) -> Response:
    """The caller's own videos among `filters.video_ids`, in the order asked; other ids are left out silently."""
    state = emulator(request)
    checked = await _authorized(request, state.video_query_window)
    if isinstance(checked, Response):
        return checked
    user, names, body = checked
    filters = body.get("filters")
    video_ids = filters.get("video_ids") if isinstance(filters, dict) else None
    if (not isinstance(video_ids, list) or not 1 <= len(video_ids) <= MAX_IDS
            or not all(isinstance(i, str) and i for i in video_ids)):
        return _invalid(request, f"filters.video_ids must be a list of 1 to {MAX_IDS} video id strings.")
    own = {v.id: v for v in seed_videos(user.open_id)}
    found = [own[i] for i in dict.fromkeys(video_ids) if i in own]
    return api_ok(request, {"videos": [_serve(state, user, v, names) for v in found]})
