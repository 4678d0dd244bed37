"""`POST /v2/oauth/token/`: authorization_code, refresh_token and client_credentials grants (contract §3)."""

from __future__ import annotations

import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tiktok_emulator.config import CLIENT_TOKEN_TTL
from tiktok_emulator.endpoint import emulated
from tiktok_emulator.pkce import verifier_matches
from tiktok_emulator.responses import form_value, oauth_error, oauth_ok
from tiktok_emulator.state import EmulatorState, emulator
from tiktok_emulator.tokenstore import TokenPair

FORM = "application/x-www-form-urlencoded"
BAD_VERIFIER = "Code verifier or code challenge is invalid."


def is_form(request: Request) -> bool:
    """TikTok takes form-urlencoded bodies only; a JSON body is a malformed request."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == FORM


def client_authenticated(state: EmulatorState, form: Any) -> bool:
    key = form_value(form, "client_key") or ""
    secret = form_value(form, "client_secret") or ""
    return (hmac.compare_digest(key.encode(), state.config.client_key.encode())
            and hmac.compare_digest(secret.encode(), state.config.client_secret.encode()))


async def client_form(request: Request, state: EmulatorState) -> Any:
    """The form of an app-authenticated call (token, revoke), or the error Response TikTok would give."""
    if not is_form(request):
        return oauth_error(request, "invalid_request", "The request parameters are malformed.")
    form = await request.form()
    if not client_authenticated(state, form):
        return oauth_error(request, "invalid_client", "Client key or secret is invalid.")
    return form


def _pair_json(pair: TokenPair) -> dict[str, Any]:
    return {
        "open_id": pair.open_id,
        "scope": ",".join(pair.scopes),
        "access_token": pair.access_token,
        "expires_in": pair.expires_in,
        "refresh_token": pair.refresh_token,
        "refresh_expires_in": pair.refresh_expires_in,
        "token_type": "Bearer",
    }


@emulated("token")
async def token_endpoint(request: Request) -> Response:
    state = emulator(request)
    form = await client_form(request, state)
    if isinstance(form, Response):
        return form
    grant_type = form_value(form, "grant_type")
    if not grant_type:
        return oauth_error(request, "invalid_request", "Missing required parameter: grant_type.")
    if grant_type == "authorization_code":
        return _code_grant(request, state, form)
    if grant_type == "refresh_token":
        refresh_token = form_value(form, "refresh_token")
        if not refresh_token:
            return oauth_error(request, "invalid_request", "Missing required parameter: refresh_token.")
        result = state.tokens.refresh(refresh_token)
        if isinstance(result, str):
            return oauth_error(request, "invalid_grant", result)
        return oauth_ok(request, _pair_json(result))
    if grant_type == "client_credentials":
        record = state.tokens.issue_client_token()
        return oauth_ok(request, {"access_token": record.token, "expires_in": CLIENT_TOKEN_TTL,
                                  "token_type": "Bearer"})
    return oauth_error(request, "unsupported_grant_type", f"Grant type {grant_type!r} is not supported.")


def _code_grant(request: Request, state: EmulatorState, form: Any) -> Response:
    code_value = form_value(form, "code")
    redirect_uri = form_value(form, "redirect_uri")
    if not code_value or redirect_uri is None:
        return oauth_error(request, "invalid_request", "Missing required parameter: code and redirect_uri.")
    code = state.consents.find_code(code_value)
    if code is None or code.client_key != state.config.client_key:
        return oauth_error(request, "invalid_grant", "Authorization code is invalid.")
    if code.used:
        return oauth_error(request, "invalid_grant", "Authorization code has already been used.")
    if state.clock.now() >= code.expires_at:
        return oauth_error(request, "invalid_grant", "Authorization code is expired.")
    if redirect_uri != code.redirect_uri:
        return oauth_error(request, "invalid_request",
                           "The redirect_uri does not match the one used to request the code.")
    if code.code_challenge is not None:
        verifier = form_value(form, "code_verifier") or ""
        if not verifier_matches(verifier, code.code_challenge,
                                accept_base64url=state.config.accept_base64url_challenge):
            return oauth_error(request, "invalid_request", BAD_VERIFIER)
    # Spent only by a successful exchange, so a client can retry after fixing its verifier.
    code.used = True
    return oauth_ok(request, _pair_json(state.tokens.issue(code.open_id, code.scopes)))
