"""`GET /v2/user/info/`: Bearer check, scope gating per field, the data/error envelope and the rate limit."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from tiktok_emulator.api_auth import authorize_api_call
from tiktok_emulator.config import BASIC
from tiktok_emulator.endpoint import emulated
from tiktok_emulator.responses import api_error, api_ok
from tiktok_emulator.state import emulator
from tiktok_emulator.users import FIELD_SCOPES


@emulated("user_info")
async def user_info_endpoint(request: Request) -> Response:
    state = emulator(request)
    # Inferred split (contract §5.2): no user.info.basic at all (app tokens included) is "not authorized";
    # basic present but a field needs another scope is "permission missed".
    checked = authorize_api_call(request, state.user_info_window, BASIC)
    if isinstance(checked, Response):
        return checked
    record, names = checked.record, checked.fields
    missing = sorted({FIELD_SCOPES[n] for n in names if n in FIELD_SCOPES} - set(record.scopes))
    if missing:
        return api_error(request, "scope_permission_missed",
                         f"Some requested fields need scopes that were not granted: {', '.join(missing)}.", 400)
    user = state.users.get(checked.open_id)
    if user is None:  # cannot happen while tokens only name known users; answer like TikTok for a dead account
        return api_error(request, "access_token_invalid", "The user no longer exists.", 401)
    return api_ok(request, {"user": state.users.fields(user, names)})
