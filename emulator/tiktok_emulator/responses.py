"""TikTok's answer shapes: OAuth JSON (flat, errors with log_id) and the user-info envelope; all carry a log id."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from tiktok_emulator import ids
from tiktok_emulator.state import emulator

LOG_ID_HEADER = "X-Tt-Logid"


def new_log_id(request: Request) -> str:
    """One per request, reused by the body and the header so support-style lookups line up."""
    existing = getattr(request.state, "log_id", None)
    if isinstance(existing, str):
        return existing
    log_id = ids.log_id(emulator(request).clock.now())
    request.state.log_id = log_id
    return log_id


def note_error(request: Request, error: str) -> None:
    """Remember the error name for the call record (the HTTP status alone hides 200-with-error answers)."""
    request.state.emulator_error = error


def oauth_ok(request: Request, body: dict[str, Any]) -> JSONResponse:
    # Success bodies keep the documented shape exactly (revoke answers `{}`), so the log id rides the header.
    return JSONResponse(body, 200, headers={LOG_ID_HEADER: new_log_id(request)})


def oauth_error(request: Request, error: str, description: str) -> JSONResponse:
    """Status comes from `oauth_error_status`: TikTok is observed to answer OAuth errors with HTTP 200."""
    note_error(request, error)
    log_id = new_log_id(request)
    return JSONResponse({"error": error, "error_description": description, "log_id": log_id},
                        emulator(request).config.oauth_error_status, headers={LOG_ID_HEADER: log_id})


def api_ok(request: Request, data: dict[str, Any]) -> JSONResponse:
    log_id = new_log_id(request)
    return JSONResponse({"data": data, "error": {"code": "ok", "message": "", "log_id": log_id}}, 200,
                        headers={LOG_ID_HEADER: log_id})


def api_error(request: Request, code: str, message: str, status: int) -> JSONResponse:
    """Errors carry only the `error` object, never `data` (contract §5.2)."""
    note_error(request, code)
    log_id = new_log_id(request)
    return JSONResponse({"error": {"code": code, "message": message, "log_id": log_id}}, status,
                        headers={LOG_ID_HEADER: log_id})


def form_value(form: Any, name: str) -> str | None:
    """A text form field, or None when absent or a file upload."""
    value = form.get(name)
    return value if isinstance(value, str) else None


def form_values(form: Any, name: str) -> list[str]:
    return [value for value in form.getlist(name) if isinstance(value, str)]


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
