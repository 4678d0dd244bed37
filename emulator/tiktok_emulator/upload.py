"""`PUT <upload_url>`: the media transfer of FILE_UPLOAD posts, chunk by chunk, in order (contract §13).

Each chunk carries `Content-Type` (video/mp4, video/quicktime or video/webm), `Content-Length` and
`Content-Range: bytes FIRST-LAST/TOTAL`; chunk i covers [i * chunk_size, (i + 1) * chunk_size) and the last one
runs to the end of the file. Answers: 206 while chunks remain, 201 once the file is complete; 400 for a header
that does not fit the plan, 403 for a wrong token or an upload_url over an hour old, 404 for an unknown upload,
416 for a chunk out of order. Re-sending the chunk last accepted (a client that lost the answer) is answered
as the first time and not counted twice (inferred: TikTok does not say).
"""

from __future__ import annotations

import hmac
import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tiktok_emulator.endpoint import emulated
from tiktok_emulator.posts import UPLOAD_URL_TTL, Post
from tiktok_emulator.responses import LOG_ID_HEADER, new_log_id, note_error
from tiktok_emulator.state import emulator

VIDEO_TYPES = ("video/mp4", "video/quicktime", "video/webm")
CONTENT_RANGE = re.compile(r"^bytes (\d{1,12})-(\d{1,12})/(\d{1,12})$")
HEAD_BYTES = 16


def _answer(request: Request, status: int, code: str = "ok", message: str = "") -> Response:
    if code != "ok":
        note_error(request, code)
    log_id = new_log_id(request)
    return JSONResponse({"error": {"code": code, "message": message, "log_id": log_id}}, status,
                        headers={LOG_ID_HEADER: log_id})


def expected_range(post: Post, index: int) -> tuple[int, int]:
    first = index * post.chunk_size
    last = post.video_size - 1 if index == post.total_chunk_count - 1 else first + post.chunk_size - 1
    return first, last


@emulated("upload")
async def upload_endpoint(request: Request) -> Response:
    state = emulator(request)
    post = state.posts.by_upload(request.query_params.get("upload_id", ""))
    if post is None:
        return _answer(request, 404, "invalid_params", "This upload_url does not exist.")
    token = request.query_params.get("upload_token", "")
    if not hmac.compare_digest(token.encode(), post.upload_token.encode()):
        return _answer(request, 403, "invalid_params", "The upload_token is wrong.")
    if state.clock.now() > post.created_at + UPLOAD_URL_TTL:
        return _answer(request, 403, "invalid_params", "This upload_url has expired (valid for one hour).")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in VIDEO_TYPES:
        return _answer(request, 400, "invalid_file_upload", f"Content-Type must be one of {', '.join(VIDEO_TYPES)}.")
    match = CONTENT_RANGE.fullmatch(request.headers.get("content-range", ""))
    if match is None:
        return _answer(request, 400, "invalid_params", "Content-Range must read bytes FIRST-LAST/TOTAL.")
    first, last, total = (int(part) for part in match.groups())
    if total != post.video_size:
        return _answer(request, 400, "invalid_params", "Content-Range TOTAL must equal the video_size of the init.")
    body = await request.body()
    if request.headers.get("content-length") != str(len(body)) or len(body) != last - first + 1:
        return _answer(request, 400, "invalid_params",
                       "Content-Length must equal the chunk's length, LAST - FIRST + 1.")
    if post.last_range == (first, last):  # the chunk last accepted, again
        return _answer(request, 201 if post.chunks == post.total_chunk_count else 206)
    if post.chunks == post.total_chunk_count:
        return _answer(request, 416, "invalid_params", "Every chunk has already been uploaded.")
    want_first, want_last = expected_range(post, post.chunks)
    if first != want_first:
        return _answer(request, 416, "invalid_params", f"Chunks go in order: the next one starts at byte {want_first}.")
    if last != want_last:
        return _answer(request, 400, "invalid_params",
                       f"This chunk must end at byte {want_last} (chunk_size, the last chunk takes the remainder).")
    if post.chunks == 0:
        post.head = body[:HEAD_BYTES]
    post.chunks += 1
    post.uploaded_bytes += len(body)
    post.received.update(body)
    post.last_range = (first, last)
    if post.chunks < post.total_chunk_count:
        return _answer(request, 206)
    state.posts.media_ready(post)
    return _answer(request, 201)
