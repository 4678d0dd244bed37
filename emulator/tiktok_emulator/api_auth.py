"""The checks every Display API endpoint makes first, in TikTok's order: rate limit, Bearer token, scope, fields."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from tiktok_emulator.ratelimit import SlidingWindow
from tiktok_emulator.responses import api_error, bearer_token
from tiktok_emulator.state import emulator
from tiktok_emulator.tokenstore import AccessRecord


@dataclass(frozen=True)
class ApiCall:
    record: AccessRecord
    open_id: str
    fields: list[str]


def authorize_api_call(request: Request, window: SlidingWindow, scope: str) -> ApiCall | Response:
    """The token's record and the requested fields, or the error response TikTok would give."""
    state = emulator(request)
    if not window.allow():
        return api_error(request, "rate_limit_exceeded",
                         "The API rate limit was exceeded. Please try again later.", 429)
    token = bearer_token(request)
    record = state.tokens.access(token) if token else None
    if record is None or not record.active(state.clock.now()):
        message = ("The access token is invalid or not found in the request." if record is None
                   else "Access token expired or revoked; refresh it and retry.")
        return api_error(request, "access_token_invalid", message, 401)
    # App tokens (client_credentials) name no user: they never pass a user-scoped endpoint.
    if scope not in record.scopes or record.open_id is None:
        return api_error(request, "scope_not_authorized",
                         "The user did not authorize the scope required for completing this request.", 401)
    names = [name.strip() for name in request.query_params.get("fields", "").split(",") if name.strip()]
    if not names:
        return api_error(request, "invalid_params", "The required parameter 'fields' is missing.", 400)
    return ApiCall(record, record.open_id, names)
