"""Request count and latency per route template, method and status: one pure-ASGI middleware.

Pure ASGI (not BaseHTTPMiddleware) so that it adds one wrapped `send` and two clock reads per request, and never
buffers a streamed body. The route label is the matched route's template (`/tiktok/{path:path}`), which Starlette's
router leaves in the scope; requests that match no route share the label "unmatched", so no client can add series.
"""

from __future__ import annotations

from time import perf_counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broker.metrics import Metrics

UNMATCHED = "unmatched"


def route_label(scope: Scope) -> str:
    """The template of the route that handled this request, or "unmatched" (404s, slash redirects)."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else UNMATCHED


class RequestMetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        status = 500  # what the server answers if the application raises before it starts a response

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            # The router has written the matched route into this same scope dict by now.
            self.metrics.observe_request(route_label(scope), scope["method"], status, perf_counter() - started)
