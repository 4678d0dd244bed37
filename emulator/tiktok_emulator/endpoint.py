"""The wrapper every emulated TikTok endpoint runs in: injected faults first, then a record of the call."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from tiktok_emulator.faults import API_ENDPOINTS, fault_response
from tiktok_emulator.responses import bearer_token, form_value, new_log_id
from tiktok_emulator.state import emulator

Handler = Callable[[Request], Awaitable[Response]]


async def _presented(request: Request, endpoint: str) -> tuple[str | None, str | None]:
    """(grant_type, token) the client sent, read before any fault so faulted calls are recorded too."""
    if endpoint in API_ENDPOINTS:
        return None, bearer_token(request)
    if endpoint in ("token", "revoke"):
        form = await request.form()  # cached on the request, so the handler reads the same fields
        if endpoint == "revoke":
            return None, form_value(form, "token")
        return form_value(form, "grant_type"), form_value(form, "refresh_token")
    return None, None


def emulated(endpoint: str) -> Callable[[Handler], Handler]:
    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def run(request: Request) -> Response:
            state = emulator(request)
            grant_type, token = await _presented(request, endpoint)
            response: Response | None = None
            for fault in state.faults.take(endpoint):
                if fault.mode == "latency":
                    await asyncio.sleep(fault.latency_ms / 1000)
                elif response is None:
                    response = fault_response(endpoint, fault.mode, new_log_id(request))
                    request.state.emulator_error = f"fault:{fault.mode}"
            if response is None:
                response = await handler(request)
            state.record_call(endpoint, grant_type=grant_type, token=token, status=response.status_code,
                              error=getattr(request.state, "emulator_error", None))
            return response
        return run
    return wrap
