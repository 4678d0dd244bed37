"""Injected failures: which endpoint misbehaves, how, and for how many calls; plus the bodies they answer with."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any

from starlette.responses import HTMLResponse, JSONResponse, Response

# Bearer-authorized, data/error envelope
API_ENDPOINTS = ("user_info", "video_list", "video_query", "creator_info", "video_init", "inbox_init",
                 "content_init", "status_fetch")
ENDPOINTS = ("authorize", "consent", "token", "revoke", *API_ENDPOINTS, "upload", "*")
MODES = ("latency", "http_500", "error_200", "rate_limit", "garbage")


@dataclass
class Fault:
    endpoint: str
    mode: str
    latency_ms: int = 0
    count: int | None = None  # calls left to affect; None = until cleared
    id: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_fault(body: Any) -> Fault | str:
    """Validate a control-API fault request; returns the problem as text when it is malformed."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    endpoint = body.get("endpoint", "*")
    mode = body.get("mode")
    latency_ms = body.get("latency_ms", 0)
    count = body.get("count")
    if endpoint not in ENDPOINTS:
        return f"endpoint must be one of {list(ENDPOINTS)}"
    if mode not in MODES:
        return f"mode must be one of {list(MODES)}"
    if not isinstance(latency_ms, int) or isinstance(latency_ms, bool) or latency_ms < 0:
        return "latency_ms must be a non-negative integer"
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
        return "count must be a positive integer or null"
    return Fault(endpoint, mode, latency_ms, count)


class FaultBook:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(self, fault: Fault) -> Fault:
        fault.id = next(self._ids)
        self._faults.append(fault)
        return fault

    def clear(self) -> None:
        self._faults.clear()

    def active(self) -> list[Fault]:
        return list(self._faults)

    def take(self, endpoint: str) -> list[Fault]:
        """The faults that hit this call, oldest first; each one used up by a call loses one from its count."""
        hits = [f for f in self._faults if f.endpoint in (endpoint, "*")]
        for fault in hits:
            if fault.count is not None:
                fault.count -= 1
        self._faults = [f for f in self._faults if f.count is None or f.count > 0]
        return hits


def fault_response(endpoint: str, mode: str, log_id: str) -> Response:
    """What TikTok looks like when it is having a bad day, shaped per endpoint family."""
    headers = {"X-Tt-Logid": log_id}
    if mode == "garbage":
        # A proxy error page instead of JSON: clients must not assume the body parses.
        return Response("<html><body>upstream connect error or disconnect/reset before headers</body></html>",
                        200, headers=headers, media_type="text/html")
    status = {"http_500": 500, "error_200": 200, "rate_limit": 429}[mode]
    if endpoint in ("authorize", "consent"):
        text = "Too many requests" if mode == "rate_limit" else "Something went wrong. Please try again later."
        return HTMLResponse(f"<html><body><h1>TikTok</h1><p>{text}</p></body></html>", status, headers=headers)
    if endpoint in (*API_ENDPOINTS, "upload"):
        code, message = ("rate_limit_exceeded", "Rate limit exceeded.") if mode == "rate_limit" else (
            "internal_error", "Internal error, please retry later.")
        return JSONResponse({"error": {"code": code, "message": message, "log_id": log_id}}, status,
                            headers=headers)
    error, description = ("rate_limit_exceeded", "Rate limit exceeded.") if mode == "rate_limit" else (
        "server_error", "Internal server error, please retry later.")
    return JSONResponse({"error": error, "error_description": description, "log_id": log_id}, status,
                        headers=headers)
