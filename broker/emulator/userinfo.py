"""`GET /v2/user/info/`: Bearer check, scope gating per field, the data/error envelope and the rate limit."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from broker.emulator.config import BASIC
from broker.emulator.endpoint import emulated
from broker.emulator.responses import api_error, api_ok, bearer_token
from broker.emulator.state import emulator
from broker.emulator.users import FIELD_SCOPES


@emulated("user_info")
async def user_info_endpoint(request: Request) -> Response:
    state = emulator(request)
    if not state.user_info_window.allow():
        return api_error(request, "rate_limit_exceeded",
                         "The API rate limit was exceeded. Please try again later.", 429)
    token = bearer_token(request)
    record = state.tokens.access(token) if token else None
    if record is None or not record.active(state.clock.now()):
        message = ("The access token is invalid or not found in the request." if record is None
                   else "Access token expired or revoked; refresh it and retry.")
        return api_error(request, "access_token_invalid", message, 401)
    # Inferred split (contract §5.2): no user.info.basic at all (app tokens included) is "not authorized";
    # basic present but a field needs another scope is "permission missed".
    if BASIC not in record.scopes or record.open_id is None:
        return api_error(request, "scope_not_authorized",
                         "The user did not authorize the scope required for completing this request.", 401)
    names = [name.strip() for name in request.query_params.get("fields", "").split(",") if name.strip()]
    if not names:
        return api_error(request, "invalid_params", "The required parameter 'fields' is missing.", 400)
    missing = sorted({FIELD_SCOPES[n] for n in names if n in FIELD_SCOPES} - set(record.scopes))
    if missing:
        return api_error(request, "scope_permission_missed",
                         f"Some requested fields need scopes that were not granted: {', '.join(missing)}.", 400)
    user = state.users.get(record.open_id)
    if user is None:  # cannot happen while tokens only name known users; answer like TikTok for a dead account
        return api_error(request, "access_token_invalid", "The user no longer exists.", 401)
    return api_ok(request, {"user": state.users.fields(user, names)})
