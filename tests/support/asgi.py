"""One request straight into an ASGI app, with bytes no HTTP client would send (a raw "#" in the query, any header)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Message


async def raw_request(app: ASGIApp, method: str, path: str, *, query: bytes = b"",
                      headers: Mapping[str, str] | None = None, body: bytes = b"",
                      client: tuple[str, int] = ("127.0.0.1", 50000)) -> tuple[int, bytes]:
    """(status, body) of the app's answer to exactly these bytes."""
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": query, "root_path": "",
        "headers": [(name.lower().encode("latin-1"), value.encode("latin-1"))
                    for name, value in (headers or {}).items()],
        "client": client, "server": ("127.0.0.1", 8080), "state": {},
    }
    chunks: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[Message] = []

    async def receive() -> Message:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(message for message in sent if message["type"] == "http.response.start")
    return int(start["status"]), b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
