"""The Content Posting API: creator info, the three inits (direct post, inbox upload, photos) and status fetch.

Every call checks, in order: the user's Bearer token, TikTok's per-token limit for the endpoint (20/min for
creator info, 6/min for each init, 30/min for status), the scope, then the JSON body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tiktok_emulator.config import VIDEO_PUBLISH, VIDEO_UPLOAD, TestUser
from tiktok_emulator.endpoint import emulated
from tiktok_emulator.post_checks import (
    PHOTO_DESCRIPTION,
    PHOTO_TITLE,
    VIDEO_TITLE,
    Problem,
    photo_source,
    post_info,
    video_source,
)
from tiktok_emulator.posts import DIRECT, FILE_UPLOAD, INBOX, PULL_FROM_URL, SELF_ONLY, privacy_options
from tiktok_emulator.ratelimit import TokenWindows
from tiktok_emulator.responses import api_error, api_ok, bearer_token
from tiktok_emulator.state import EmulatorState, emulator


@dataclass(frozen=True)
class Caller:
    user: TestUser
    body: dict[str, Any]
    scopes: tuple[str, ...]


async def _caller(request: Request, windows: TokenWindows, scopes: tuple[str, ...]) -> Caller | Response:
    state = emulator(request)
    token = bearer_token(request)
    record = state.tokens.access(token) if token else None
    if token is None or record is None or not record.active(state.clock.now()):
        return api_error(request, "access_token_invalid", "The access token is invalid or not found in the request.",
                         401)
    if not windows.allow(token):
        return api_error(request, "rate_limit_exceeded", "The API rate limit was exceeded. Please try again later.",
                         429)
    user = state.users.get(record.open_id) if record.open_id else None
    if user is None or not any(scope in record.scopes for scope in scopes):
        return api_error(request, "scope_not_authorized",
                         "The user did not authorize the scope required for completing this request.", 401)
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return api_error(request, "invalid_params", "The request body must be a JSON object.", 400)
    return Caller(user, body, record.scopes)


def _refused(request: Request, problem: Problem) -> Response:
    return api_error(request, problem.code, problem.message, problem.status)


def _check_posting(state: EmulatorState, user: TestUser, level: str | None) -> None:
    """TikTok's caps on the user and the app, then (direct posts) the privacy level against the creator's options."""
    refusal = state.posts.refusal(user)
    if refusal is not None:
        raise Problem(refusal[1], refusal[0], 403)
    if level is not None and level not in privacy_options(user, state.config.audited):
        raise Problem("post_info.privacy_level is not one of the creator's privacy_level_options.",
                      "privacy_level_option_mismatch", 400)


@emulated("creator_info")
async def creator_info_endpoint(request: Request) -> Response:
    state = emulator(request)
    caller = await _caller(request, state.posting_windows["creator_info"], (VIDEO_PUBLISH,))
    if isinstance(caller, Response):
        return caller
    user = state.users.public_profile(caller.user)
    return api_ok(request, {
        "creator_avatar_url": user.avatar_url, "creator_username": user.username,
        "creator_nickname": user.display_name,
        "privacy_level_options": privacy_options(user, state.config.audited),
        "comment_disabled": False, "duet_disabled": False, "stitch_disabled": False,
        "max_video_post_duration_sec": user.max_video_post_duration_sec,
    })


@emulated("video_init")
async def video_init_endpoint(request: Request) -> Response:
    """Direct post: post_info and source_info; FILE_UPLOAD answers an upload_url valid for one hour."""
    state = emulator(request)
    caller = await _caller(request, state.posting_windows["video_init"], (VIDEO_PUBLISH,))
    if isinstance(caller, Response):
        return caller
    try:
        info = post_info(caller.body, title_limit=VIDEO_TITLE, privacy_required=True)
        source = video_source(state.config, caller.body)
        _check_posting(state, caller.user, info["privacy_level"])
    except Problem as problem:
        return _refused(request, problem)
    return _created(state, request, caller.user, "video", DIRECT, info["privacy_level"], source.source,
                    source.video_size, source.chunk_size, source.total_chunk_count)


@emulated("inbox_init")
async def inbox_init_endpoint(request: Request) -> Response:
    """Upload to the user's inbox as a draft: source_info only; the user finishes the post in TikTok."""
    state = emulator(request)
    caller = await _caller(request, state.posting_windows["inbox_init"], (VIDEO_UPLOAD,))
    if isinstance(caller, Response):
        return caller
    try:
        source = video_source(state.config, caller.body)
        _check_posting(state, caller.user, None)
    except Problem as problem:
        return _refused(request, problem)
    return _created(state, request, caller.user, "video", INBOX, SELF_ONLY, source.source, source.video_size,
                    source.chunk_size, source.total_chunk_count)


@emulated("content_init")
async def content_init_endpoint(request: Request) -> Response:
    """Photo posts: DIRECT_POST needs video.publish, MEDIA_UPLOAD (to the inbox) video.upload."""
    state = emulator(request)
    caller = await _caller(request, state.posting_windows["content_init"], (VIDEO_PUBLISH, VIDEO_UPLOAD))
    if isinstance(caller, Response):
        return caller
    body, mode = caller.body, caller.body.get("post_mode")
    try:
        if body.get("media_type") != "PHOTO":
            raise Problem("media_type must be PHOTO.")
        if mode not in (DIRECT, INBOX):
            raise Problem("post_mode must be DIRECT_POST or MEDIA_UPLOAD.")
        if (VIDEO_PUBLISH if mode == DIRECT else VIDEO_UPLOAD) not in caller.scopes:
            raise Problem("The user did not authorize the scope required for completing this request.",
                          "scope_not_authorized", 401)
        info = post_info(body, title_limit=PHOTO_TITLE, privacy_required=mode == DIRECT,
                         description_limit=PHOTO_DESCRIPTION)
        photo_source(state.config, body)
        _check_posting(state, caller.user, info["privacy_level"] if mode == DIRECT else None)
    except Problem as problem:
        return _refused(request, problem)
    level = info["privacy_level"] if mode == DIRECT else SELF_ONLY
    return _created(state, request, caller.user, "photo", str(mode), level, PULL_FROM_URL)


@emulated("status_fetch")
async def status_fetch_endpoint(request: Request) -> Response:
    state = emulator(request)
    caller = await _caller(request, state.posting_windows["status_fetch"], (VIDEO_PUBLISH, VIDEO_UPLOAD))
    if isinstance(caller, Response):
        return caller
    publish_id = caller.body.get("publish_id")
    if not isinstance(publish_id, str) or not publish_id:
        return api_error(request, "invalid_params", "publish_id is required.", 400)
    post = state.posts.get(publish_id)
    if post is None or post.open_id != caller.user.open_id:  # another user's post does not exist for this one
        return api_error(request, "invalid_params", "publish_id does not exist.", 400)
    state.posts.settle_if_due(post)
    return api_ok(request, post.status_data())


def _created(state: EmulatorState, request: Request, user: TestUser, media: str, mode: str, privacy_level: str,
             source: str, video_size: int = 0, chunk_size: int = 0, total_chunk_count: int = 0) -> Response:
    post = state.posts.create(open_id=user.open_id, media=media, mode=mode, source=source,
                              privacy_level=privacy_level, video_size=video_size, chunk_size=chunk_size,
                              total_chunk_count=total_chunk_count)
    data: dict[str, Any] = {"publish_id": post.publish_id}
    if source == FILE_UPLOAD:
        data["upload_url"] = state.posts.upload_url(post)
    return api_ok(request, data)
