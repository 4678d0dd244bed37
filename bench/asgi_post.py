"""One form POST to an ASGI app in this process, as an HTTP server would hand it over: the profiles and the
refresh_shares figure drive the broker's app this way, with no socket and no HTTP parser in the numbers."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

ASGIApp = Callable[..., Awaitable[None]]
FORM = b"application/x-www-form-urlencoded"


def form_scope(path: str, body: bytes, *, port: int = 8080,
               headers: Sequence[tuple[bytes, bytes]] = ()) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", port), "state": {},
            "headers": [(b"host", f"127.0.0.1:{port}".encode()), (b"content-type", FORM),
                        (b"content-length", str(len(body)).encode()), *headers]}


async def post_form(app: ASGIApp, path: str, body: bytes, *, port: int = 8080,
                    headers: Sequence[tuple[bytes, bytes]] = ()) -> dict[str, Any]:
    """The JSON answer of a POST of `body`; RuntimeError for any status but 200."""
    answer: dict[str, Any] = {"body": b""}
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    await app(form_scope(path, body, port=port, headers=headers), receive, send)
    if answer.get("status") != 200:
        raise RuntimeError(f"{path} answered {answer.get('status')}: {answer['body'][:200]!r}")
    result: dict[str, Any] = json.loads(answer["body"])
    return result
