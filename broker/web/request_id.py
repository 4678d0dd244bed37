"""Request ids: taken from X-Request-Id when it is sane, made up otherwise, echoed back and put on every log line."""

from __future__ import annotations

import itertools
import re
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broker.logs import request_id

SANE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Made-up ids: a random prefix per process and a counter, unique across replicas without a random draw (and a
# system call) per request.
_PROCESS_PREFIX = secrets.token_hex(6)
_next_number = itertools.count(1)
# Where a layer in front (the gateway's lean path) leaves the id it already chose for a request it hands on.
CHOSEN = "broker.request_id"


def request_id_for(incoming: bytes) -> str:
    """The id of a request: its X-Request-Id when sane, else a new one."""
    text = incoming.decode("latin-1")
    return text if SANE.fullmatch(text) else f"{_PROCESS_PREFIX}{next(_next_number):x}"


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        current = scope.get(CHOSEN) or request_id_for(
            next((value for name, value in scope["headers"] if name == b"x-request-id"), b""))
        token = request_id.set(current)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", current.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)
