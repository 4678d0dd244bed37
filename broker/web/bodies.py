"""Request bodies, read with a cap: a body over its endpoint's cap is refused (413) before it is held in memory.

Starlette reads whatever a client sends (its form parser allows about a gigabyte); every endpoint that reads a
body goes through here instead. A declared Content-Length over the cap is refused before a byte is read, and a
streamed (chunked) body as soon as it passes the cap, so a refused request costs at most the cap in memory.
"""

from __future__ import annotations

from urllib.parse import unquote_plus

from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Message

from broker.errors import PayloadTooLarge

FORM_LIMIT = 16 * 1024  # OAuth and browser forms: a few short fields
MAX_FORM_FIELDS = 64
URLENCODED = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or PayloadTooLarge as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(log_detail=f"Content-Length {declared} over {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(log_detail=f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_form(request: Request, *, limit: int = FORM_LIMIT, multipart: bool = True) -> FormData:
    """The form fields of a capped body: URL-encoded, or (when `multipart`) multipart without files. Any other
    media type gives an empty form; the caller decides whether that is acceptable."""
    kind = media_type(request)
    if kind not in (URLENCODED, *((MULTIPART,) if multipart else ())):
        return FormData()
    body = await read_body(request, limit)
    if kind == URLENCODED:
        return parse_urlencoded(body)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return {"type": "http.disconnect"}
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    # Starlette's multipart parser, fed the capped bytes once more: no file parts, a few fields (more are a 400).
    return await Request(request.scope, replay).form(max_files=0, max_fields=MAX_FORM_FIELDS)


def parse_urlencoded(body: bytes, *, max_fields: int = MAX_FORM_FIELDS) -> FormData:
    """The fields of a URL-encoded body, as Starlette's parser (python-multipart's, lenient) reads them: split on
    "&", empty chunks skipped, a chunk without "=" is a name with an empty value, names and values decoded as
    Latin-1 then percent- and plus-decoded as UTF-8; more than `max_fields` fields is Starlette's 400. A few
    microseconds instead of the tens its general parser takes (every token request parses a form)."""
    items: list[tuple[str, str | UploadFile]] = []
    for chunk in body.decode("latin-1").split("&"):
        if not chunk:
            continue
        if len(items) == max_fields:
            raise HTTPException(status_code=400, detail=f"Too many fields. Maximum number of fields is {max_fields}.")
        name, _, value = chunk.partition("=")
        items.append((unquote_plus(name), unquote_plus(value)))
    return FormData(items)
