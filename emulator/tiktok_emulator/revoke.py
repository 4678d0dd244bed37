"""`POST /v2/oauth/revoke/`: the developer disconnects a user; tokens die and `authorization.removed` follows."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from tiktok_emulator.endpoint import emulated
from tiktok_emulator.responses import form_value, oauth_error, oauth_ok
from tiktok_emulator.state import emulator
from tiktok_emulator.token import client_form

DEVELOPER_REVOKED = 5  # authorization.removed reason: "developer revoked authorization" (contract §6)


@emulated("revoke")
async def revoke_endpoint(request: Request) -> Response:
    state = emulator(request)
    form = await client_form(request, state)
    if isinstance(form, Response):
        return form
    token = form_value(form, "token")
    if not token:
        return oauth_error(request, "invalid_request", "Missing required parameter: token.")
    record = state.tokens.access(token)
    if record is None:
        # Not documented; a refresh token or a made-up string is a client bug worth surfacing.
        return oauth_error(request, "invalid_request", "The token is not an access token issued to this app.")
    if record.open_id is None:
        state.tokens.revoke_client_token(token)
        return oauth_ok(request, {})
    # The whole authorization goes (the app leaves the user's connected-apps list), not just this token;
    # an already-revoked or expired token still succeeds, so a retried disconnect is harmless.
    revoked = state.tokens.revoke_user(record.open_id)
    state.consents.forget(record.open_id)
    if revoked:
        state.webhooks.authorization_removed(record.open_id, DEVELOPER_REVOKED)
    return oauth_ok(request, {})
