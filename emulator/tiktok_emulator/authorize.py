"""The browser side of Login Kit: `GET /v2/auth/authorize/` and the consent form it shows.

The consent page's form POSTs to `/v2/auth/authorize/consent`, form-urlencoded, with exactly these
fields (the broker's end-to-end tests submit them with an HTTP client, so they are an interface):

- `request_id`   hidden; identifies the pending authorization (single use, expires after `consent_ttl`).
- `user`         open_id of an existing test user, or empty when `display_name` is given.
- `display_name` optional; used when `user` is empty: creates (or reuses) a user whose open_id and
                 union_id are derived from the name, so the same name is the same person every time.
- `scope`        repeated, one per scope the person grants; only requested scopes count, and
                 `user.info.basic` is always granted when it was requested.
- `action`       `allow` or `deny`.

Allow: 302 to `redirect_uri?code=…&scopes=<granted, comma-separated>&state=…`.
Deny:  302 to `redirect_uri?error=access_denied&error_description=…&state=…`.
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tiktok_emulator.config import BASIC, EmulatorConfig, TestUser
from tiktok_emulator.endpoint import emulated
from tiktok_emulator.pages import consent_page, error_page
from tiktok_emulator.redirects import is_registered
from tiktok_emulator.responses import form_value, form_values, note_error
from tiktok_emulator.sdk import sdk_challenge_problem
from tiktok_emulator.sessions import PendingAuthorization
from tiktok_emulator.state import EmulatorState, emulator
from tiktok_emulator.users import MAX_DISPLAY_NAME


def _redirect(redirect_uri: str, params: dict[str, str | None]) -> Response:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return RedirectResponse(f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{query}", status_code=302)


def _parse(config: EmulatorConfig, q: QueryParams) -> PendingAuthorization | tuple[str, str]:
    """The request as a pending authorization (not yet stored), or (offending parameter, message)."""
    if not q.get("client_key"):
        return "client_key", "The client_key parameter is missing."
    if q["client_key"] != config.client_key:
        return "client_key", "This client_key does not belong to a registered app."
    if q.get("response_type") != "code":
        return "response_type", "response_type must be 'code'."
    redirect_uri = q.get("redirect_uri", "")
    sdk = redirect_uri in config.sdk_redirect_uris  # the app's iOS or Android build, through TikTok's SDK
    if not sdk and not is_registered(redirect_uri, config.redirect_uris, config.platform):
        return "redirect_uri", "The redirect_uri is not registered for this app (exact match required)."
    scopes = list(dict.fromkeys(s.strip() for s in q.get("scope", "").split(",") if s.strip()))
    if not scopes:
        return "scope", "The scope parameter is missing (comma-separated scopes)."
    unapproved = [s for s in scopes if s not in config.approved_scopes]
    if unapproved:
        return "scope", f"Scopes not approved for this app: {', '.join(unapproved)}."
    challenge = q.get("code_challenge") or None
    method = q.get("code_challenge_method")
    if method is not None and method != "S256":
        return "code_challenge_method", "Only code_challenge_method=S256 is supported."
    if sdk:
        problem = sdk_challenge_problem(challenge)
        if problem:
            return "code_challenge", problem
    # Mobile SDKs omit the method, so web accepts a bare challenge; desktop documents both as required.
    elif config.platform == "desktop" and (challenge is None or method is None):
        return ("code_challenge", "PKCE is required: send code_challenge.") if challenge is None else (
            "code_challenge_method", "code_challenge_method=S256 is required.")
    if challenge is None and config.require_pkce_web:
        return "code_challenge", "PKCE is required: send code_challenge (hex SHA-256 of the verifier)."
    return PendingAuthorization("", redirect_uri, tuple(scopes), q.get("state"), challenge, 0.0)


def _approve(state: EmulatorState, pending: PendingAuthorization, user: TestUser,
             scopes: tuple[str, ...]) -> Response:
    state.consents.remember(user.open_id, scopes)
    code = state.consents.issue_code(client_key=state.config.client_key, redirect_uri=pending.redirect_uri,
                                     code_challenge=pending.code_challenge, open_id=user.open_id, scopes=scopes)
    return _redirect(pending.redirect_uri, {"code": code.code, "scopes": ",".join(scopes), "state": pending.state})


@emulated("authorize")
async def authorize_endpoint(request: Request) -> Response:
    state = emulator(request)
    parsed = _parse(state.config, request.query_params)
    if isinstance(parsed, tuple):
        return error_page(request, *parsed)
    # Without disable_auto_auth=1 a person who already authorized this app goes straight back (contract §9 #12).
    if request.query_params.get("disable_auto_auth") != "1":
        known = state.consents.auto_approvable(parsed.scopes)
        user = state.users.get(known) if known else None
        if user is not None:
            return _approve(state, parsed, user, parsed.scopes)
    pending = state.consents.open_request(redirect_uri=parsed.redirect_uri, scopes=parsed.scopes,
                                          state=parsed.state, code_challenge=parsed.code_challenge)
    return consent_page(request, pending)


@emulated("consent")
async def consent_endpoint(request: Request) -> Response:
    state = emulator(request)
    form = await request.form()
    request_id = form_value(form, "request_id") or ""
    pending = state.consents.peek_request(request_id)
    if pending is None:
        return error_page(request, "request_id",
                          "This authorization request has expired or was already answered. Start again.")
    action = form_value(form, "action")
    if action == "deny":
        state.consents.take_request(request_id)
        note_error(request, "access_denied")
        return _redirect(pending.redirect_uri, {"error": "access_denied",
                                                "error_description": "User cancelled the authorization",
                                                "state": pending.state})
    if action != "allow":
        return error_page(request, "action", "action must be 'allow' or 'deny'.")
    chosen = (form_value(form, "user") or "").strip()
    display_name = (form_value(form, "display_name") or "").strip()
    if chosen:
        user = state.users.get(chosen)
        if user is None:
            return error_page(request, "user", "No test user has this open_id.")
    elif display_name:
        if len(display_name) > MAX_DISPLAY_NAME:
            return error_page(request, "display_name", f"Keep the name under {MAX_DISPLAY_NAME} characters.")
        user = state.users.from_name(display_name)
    else:
        return error_page(request, "user", "Pick a test user or type a display name.")
    ticked = set(form_values(form, "scope"))
    granted = tuple(s for s in pending.scopes if s in ticked or s == BASIC)
    if not granted:
        return error_page(request, "scope", "Grant at least one of the requested scopes.")
    state.consents.take_request(request_id)
    return _approve(state, pending, user, granted)
