"""The `/_emulator/` JSON control API for tests and demos: faults, call log, forced expiry, webhook triggers,
SDK-style codes without a phone (sdk.py).

It can end sessions, hand out tokens and list them, so no web page may reach it: it answers only requests whose
Host is a loopback name or the emulator's own public host (a page on another site, even one whose name resolves
to 127.0.0.1, sends its own name), and its POSTs only with a JSON body (which a page can send cross-site only
after a CORS preflight that the emulator never grants).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tiktok_emulator.faults import parse_fault
from tiktok_emulator.sdk import sdk_authorize
from tiktok_emulator.state import emulator

REASONS = range(6)  # authorization.removed reasons 0-5 (contract §6)
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
Endpoint = Callable[[Request], Awaitable[Response]]


def _host_name(header: str) -> str:
    """The name in a Host header, without its port: `127.0.0.1:8081` -> `127.0.0.1`, `[::1]:8081` -> `::1`."""
    host = header.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else ""
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def local_only(endpoint: Endpoint) -> Endpoint:
    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        name = _host_name(request.headers.get("host", ""))
        if name not in LOOPBACK_NAMES and name != urlsplit(emulator(request).config.public_url).hostname:
            return _bad("the control API answers only on a loopback host or the emulator's public URL", 403)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if request.method == "POST" and kind != "application/json":
            return _bad("the body must be application/json", 415)
        return await endpoint(request)
    return guarded


async def _json_object(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _bad(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status)


async def add_fault(request: Request) -> Response:
    fault = parse_fault(await _json_object(request))
    if isinstance(fault, str):
        return _bad(fault)
    return JSONResponse(emulator(request).faults.add(fault).to_json(), 201)


async def list_faults(request: Request) -> Response:
    return JSONResponse({"faults": [f.to_json() for f in emulator(request).faults.active()]})


async def clear_faults(request: Request) -> Response:
    emulator(request).clear_faults()
    return JSONResponse({})


async def list_calls(request: Request) -> Response:
    return JSONResponse({"calls": emulator(request).calls})


async def clear_calls(request: Request) -> Response:
    emulator(request).calls.clear()
    return JSONResponse({})


async def expire(request: Request) -> Response:
    body = await _json_object(request)
    token = body.get("access_token") if body else None
    if not isinstance(token, str) or not token:
        return _bad("access_token (string) is required")
    if not emulator(request).expire_access_token(token):
        return _bad("no such access token", 404)
    return JSONResponse({"expired": True})


async def authorization_removed(request: Request) -> Response:
    body = await _json_object(request)
    if body is None:
        return _bad("body must be a JSON object")
    open_id, reason, duplicate = body.get("open_id"), body.get("reason", 0), body.get("duplicate", False)
    if not isinstance(open_id, str) or not open_id:
        return _bad("open_id (string) is required")
    if not isinstance(reason, int) or isinstance(reason, bool) or reason not in REASONS:
        return _bad("reason must be an integer 0-5")
    state = emulator(request)
    revoked, queued = state.remove_authorization(open_id, reason, duplicate=bool(duplicate))
    return JSONResponse({"open_id": open_id, "reason": reason, "revoked_tokens": revoked,
                         "webhook": "queued" if queued else "not sent: no webhook_url configured"}, 202)


async def list_deliveries(request: Request) -> Response:
    return JSONResponse({"deliveries": [asdict(d) for d in emulator(request).webhooks.deliveries]})


async def list_users(request: Request) -> Response:
    state = emulator(request)
    users = [state.users.public_profile(u) for u in (*state.users.seeded(), *state.users.typed())]
    return JSONResponse({"users": [asdict(u) for u in users]})


async def tokens_for(request: Request) -> Response:
    issued = emulator(request).issued_tokens_for(request.path_params["open_id"])
    return JSONResponse({"tokens": [asdict(t) for t in issued]})


async def reset(request: Request) -> Response:
    emulator(request).reset()
    return JSONResponse({})


routes = [
    Route("/_emulator/faults", local_only(add_fault), methods=["POST"]),
    Route("/_emulator/faults", local_only(list_faults), methods=["GET"]),
    Route("/_emulator/faults", local_only(clear_faults), methods=["DELETE"]),
    Route("/_emulator/calls", local_only(list_calls), methods=["GET"]),
    Route("/_emulator/calls", local_only(clear_calls), methods=["DELETE"]),
    Route("/_emulator/expire", local_only(expire), methods=["POST"]),
    Route("/_emulator/webhooks/authorization-removed", local_only(authorization_removed), methods=["POST"]),
    Route("/_emulator/webhooks", local_only(list_deliveries), methods=["GET"]),
    Route("/_emulator/users", local_only(list_users), methods=["GET"]),
    Route("/_emulator/users/{open_id}/tokens", local_only(tokens_for), methods=["GET"]),
    Route("/_emulator/reset", local_only(reset), methods=["POST"]),
    Route("/_emulator/sdk/authorize", local_only(sdk_authorize), methods=["POST"]),
]
