"""SDK-style codes (contract §12): what TikTok's iOS and Android SDKs obtain for an app's https redirect URI.

The SDK makes the PKCE verifier itself and sends TikTok only its challenge, the lowercase hex SHA-256, without
`code_challenge_method`; the app hands the code, the verifier and the exact redirect URI to its backend, which
redeems them at `POST /v2/oauth/token/` with the app's key and secret. Such a code is bound to that redirect URI
and challenge, and only the matching verifier redeems it (see token.py).

A phone is not needed to get one: `POST /_emulator/sdk/authorize` (test-only, on the control API) plays the
SDK's part and the person's "Authorize" in one step. JSON body:

    {"redirect_uri": "<one of sdk_redirect_uris>", "code_challenge": "<64 lowercase hex digits>",
     "scope": "user.info.basic,user.info.profile", "user": "<a test user's open_id>", "state": "optional"}

`scope` defaults to `user.info.basic`, `user` to the first seeded test user. Answer 201 with what the SDK's
response carries: `{"code", "scopes", "state"}` (`scopes` comma-separated, as granted). Refusals: 400
`{"error": "<what is wrong>"}`.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tiktok_emulator.state import emulator

HEX_CHALLENGE = re.compile(r"^[0-9a-f]{64}$")


def sdk_challenge_problem(challenge: str | None) -> str | None:
    """Why a challenge is not what TikTok's SDKs send (None when it is)."""
    if challenge is None:
        return "PKCE is required: the SDK sends code_challenge (hex SHA-256 of its verifier)."
    if not HEX_CHALLENGE.fullmatch(challenge):
        return "code_challenge must be the lowercase hex SHA-256 of the verifier (64 hex digits)."
    return None


def _bad(message: str) -> JSONResponse:
    return JSONResponse({"error": message}, 400)


async def sdk_authorize(request: Request) -> Response:
    """POST /_emulator/sdk/authorize: an SDK-style code, as if the person authorized the app on their phone."""
    state = emulator(request)
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return _bad("body must be a JSON object")
    redirect_uri, challenge = body.get("redirect_uri"), body.get("code_challenge")
    scope, chosen, app_state = body.get("scope", "user.info.basic"), body.get("user"), body.get("state")
    if not isinstance(redirect_uri, str) or redirect_uri not in state.config.sdk_redirect_uris:
        return _bad("redirect_uri must be one of the app's sdk_redirect_uris")
    problem = sdk_challenge_problem(challenge if isinstance(challenge, str) else None)
    if problem:
        return _bad(problem)
    if not isinstance(scope, str) or not scope.strip():
        return _bad("scope must be a comma-separated string of scopes")
    scopes = tuple(dict.fromkeys(s.strip() for s in scope.split(",") if s.strip()))
    unapproved = [s for s in scopes if s not in state.config.approved_scopes]
    if unapproved:
        return _bad(f"scopes not approved for this app: {', '.join(unapproved)}")
    user = state.users.get(chosen) if isinstance(chosen, str) else state.config.users[0] if chosen is None else None
    if user is None:
        return _bad("user must be the open_id of a test user")
    if app_state is not None and not isinstance(app_state, str):
        return _bad("state must be a string")
    state.consents.remember(user.open_id, scopes)
    code = state.consents.issue_code(client_key=state.config.client_key, redirect_uri=redirect_uri,
                                     code_challenge=challenge, open_id=user.open_id, scopes=scopes)
    return JSONResponse({"code": code.code, "scopes": ",".join(scopes), "state": app_state}, 201)
