"""An app's back-channel logout endpoint on loopback: it keeps every logout token it is sent."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.servers import ThreadedServer


@dataclass
class LogoutReceiver:
    tokens: list[str] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)
    failures_left: int = 0  # answer 503 this many times first (the outbox retries)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            form = await request.form()
            with self._lock:
                if self.failures_left > 0:
                    self.failures_left -= 1
                    return Response(status_code=503)
                self.tokens.append(str(form.get("logout_token", "")))
                self.content_types.append(request.headers.get("content-type", ""))
            return Response(status_code=200, headers={"Cache-Control": "no-store"})

        return Starlette(routes=[Route("/backchannel", receive, methods=["POST"])])

    def wait_for(self, count: int, timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.tokens) >= count:
                    return list(self.tokens)
            time.sleep(0.05)
        raise AssertionError(f"{len(self.tokens)} logout tokens arrived, expected {count}")


@contextmanager
def logout_receiver() -> Iterator[LogoutReceiver]:
    receiver = LogoutReceiver()
    server = ThreadedServer(receiver.app()).start()
    receiver.url = f"{server.url}/backchannel"
    try:
        yield receiver
    finally:
        server.stop()
