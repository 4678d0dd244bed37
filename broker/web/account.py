"""The account area: /account (page, connected apps), ending a session, logout (the broker's own form, an app's
bearer call, or OpenID RP-initiated logout), revoking an app, and deletion (page with confirmation, or API)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from broker.domain import Session
from broker.errors import InsufficientScope, InvalidRequest, InvalidToken
from broker.flows.logout import is_rp_logout
from broker.web.bodies import read_form
from broker.web.browser_guard import require_same_origin
from broker.web.client_addr import client_ip
from broker.web.cookies import clear_session_cookie, read_session_cookie
from broker.web.dpop import check_sender, presented_token
from broker.web.render import NO_STORE, answer_as_api, html_endpoint, render_page
from broker.web.services import Services, services

NO_POWER = ("This token may not manage the account: use the session, or a first-party app's token with the "
            "scope 'account'.")


async def _form(request: Request) -> FormData:
    return await read_form(request)


def _when(instant: float) -> str:
    return datetime.fromtimestamp(instant, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


async def _browser_session(svc: Services, request: Request) -> Session | None:
    return await svc.sessions.resolve(read_session_cookie(request, svc.settings))


def _to_login(svc: Services, path: str) -> Response:
    return RedirectResponse(f"{svc.settings.issuer}/login?return_to={path}", status_code=303, headers=NO_STORE)


def _to(location: str) -> Response:
    return RedirectResponse(location, status_code=303, headers=NO_STORE)


async def _account_claims(svc: Services, request: Request, token: str) -> dict[str, object]:
    """A bearer token that holds the account powers; 403 insufficient_scope for any other valid token, before
    anything changes."""
    answer_as_api(request)
    claims = await svc.tokens.check_access_token(token)
    await check_sender(svc, request, token, claims)
    if not svc.account.powers.allow(claims):
        raise InsufficientScope(NO_POWER, log_detail=f"client {claims.get('client_id')!r} lacks the account power")
    return claims


def _app_name(svc: Services, client_id: str) -> str:
    client = svc.clients.get(client_id) if client_id else None
    return client.name if client else ""


@html_endpoint
async def account_page(request: Request) -> Response:
    svc = services(request)
    session = await _browser_session(svc, request)
    if session is None:
        return _to_login(svc, "/account")
    profile = await svc.account.profile(session.user_id)
    views = [{"session": view.session, "current": view.current, "last_seen": _when(view.session.last_seen),
              "app": _app_name(svc, view.session.client_id)} for view in await svc.account.sessions_of(session)]
    apps = [{"app": app, "first_used": _when(app.first_used), "last_used": _when(app.last_used)}
            for app in await svc.account.connected_apps(session.user_id)]
    now = svc.account.clock.now()
    return render_page(request, "account.html", {
        "profile": profile, "scopes": [s for s in profile.get("scopes", "").split(",") if s],
        "tiktok_linked": profile.get("tiktok_link", "linked") != "broken", "sessions": views, "apps": apps,
        "end_token": svc.form_tokens.issue(session.sid, "end-session", now),
        "revoke_token": svc.form_tokens.issue(session.sid, "revoke-app", now)})


async def _signed_in_post(request: Request) -> tuple[Services, Session | None, FormData]:
    """A browser form post: from this site (CSRF guard), its session (None when signed out) and its fields."""
    svc = services(request)
    require_same_origin(request, svc.settings.issuer)
    return svc, await _browser_session(svc, request), await _form(request)


@html_endpoint
async def end_session(request: Request) -> Response:
    """The account page's End button, or an app holding the account power (bearer, JSON answer)."""
    svc = services(request)
    bearer = presented_token(request)
    if bearer is not None:
        claims = await _account_claims(svc, request, bearer)
        sid = (await _form(request)).get("sid")
        if not isinstance(sid, str) or not sid:
            raise InvalidRequest("sid is required.")
        ended = await svc.account.end_session(str(claims["sub"]), sid)
        return JSONResponse({"ended": int(ended)}, headers=NO_STORE)
    svc, session, form = await _signed_in_post(request)
    if session is None:
        return _to_login(svc, "/account")
    sid, token = form.get("sid"), form.get("csrf_token")
    if not isinstance(sid, str) or not svc.form_tokens.check(str(token or ""), session.sid, "end-session",
                                                              svc.account.clock.now()):
        raise InvalidRequest("This form has expired. Please try again.")
    await svc.account.end_session(session.user_id, sid)
    return _to(f"{svc.settings.issuer}/account")


@html_endpoint
async def revoke_app(request: Request) -> Response:
    """Connected apps: Revoke forgets the consent and ends the app's refresh families at once."""
    svc, session, form = await _signed_in_post(request)
    if session is None:
        return _to_login(svc, "/account")
    client_id, token = form.get("client_id"), form.get("csrf_token")
    if not isinstance(client_id, str) or not client_id or not svc.form_tokens.check(
            str(token or ""), session.sid, "revoke-app", svc.account.clock.now()):
        raise InvalidRequest("This form has expired. Please try again.")
    await svc.account.disconnect_app(session.user_id, client_id)
    return _to(f"{svc.settings.issuer}/account")


@html_endpoint
async def logout(request: Request) -> Response:
    """POST /logout: an app's bearer call (JSON); OpenID RP-initiated logout (id_token_hint or client_id); or the
    broker's own form (origin-checked). A session already gone logs out quietly. The rate limit comes first, and a
    bearer token is checked before the body is read; every body is capped (16 KiB) before it is parsed, and the
    own form's origin is checked before anything ends."""
    svc = services(request)
    bearer = presented_token(request)
    if bearer is not None:
        answer_as_api(request)
    await svc.limits.check("logout", ip=client_ip(request))
    if bearer is not None:
        return await _logout_by_bearer(svc, request, bearer)
    form = await _form(request)
    params = {**request.query_params, **{k: v for k, v in form.items() if isinstance(v, str)}}
    if is_rp_logout(params) or "confirm" in params:
        return await _rp_logout(svc, request, params, confirmed=str(params.get("confirm", "")))
    everywhere = str(params.get("everywhere", "")).lower() in ("true", "1", "on")
    require_same_origin(request, svc.settings.issuer)
    raw_target = params.get("post_logout_redirect_uri") or params.get("return_to")
    target = svc.login.return_urls.check(str(raw_target) if raw_target else None)  # before anything ends
    session = await _browser_session(svc, request)
    if session is not None:
        await svc.account.logout(session, everywhere=everywhere)
    response = _to(target)
    clear_session_cookie(response, svc.settings)
    return response


@html_endpoint
async def logout_page(request: Request) -> Response:
    """GET /logout, OpenID's end_session_endpoint: an app sends the browser here to sign the user out."""
    return await _rp_logout(services(request), request, dict(request.query_params), confirmed="")


async def _rp_logout(svc: Services, request: Request, params: dict[str, str], *, confirmed: str) -> Response:
    wanted = svc.logout.parse(params)  # an unknown client or unregistered redirect: a page, nothing ends
    session = await _browser_session(svc, request)
    if confirmed:
        require_same_origin(request, svc.settings.issuer)
        if session is not None and not svc.form_tokens.check(confirmed, session.sid, "logout",
                                                              svc.account.clock.now()):
            raise InvalidRequest("This page has expired. Please try again.")
    elif session is not None and not wanted.names(session):
        # No hint (or one for someone else): the user confirms on our page before anything ends.
        return render_page(request, "logout_confirm.html", {
            "carried": wanted.carried, "app_name": wanted.client.name if wanted.client else "",
            "confirm": svc.form_tokens.issue(session.sid, "logout", svc.account.clock.now())},
                           redirects_to=(wanted.target,))
    if session is not None or wanted.hint is not None:
        await svc.logout.end(wanted, session)
    response = _to(wanted.target)
    clear_session_cookie(response, svc.settings)
    return response


async def _logout_by_bearer(svc: Services, request: Request, bearer: str) -> Response:
    claims = await svc.tokens.check_access_token(bearer)  # before the body is read
    await check_sender(svc, request, bearer, claims)
    everywhere = str((await _form(request)).get("everywhere", request.query_params.get("everywhere", "")))
    everywhere_wanted = everywhere.lower() in ("true", "1", "on")
    if everywhere_wanted and not svc.account.powers.allow(claims):
        raise InsufficientScope(NO_POWER, log_detail=f"client {claims.get('client_id')!r} lacks the account power")
    current = await svc.tokens.session_for(claims)
    if current is None:
        return JSONResponse({"ended": 0}, headers=NO_STORE)
    # Without the account power a token ends only what it stands for (an app's own family), never the TikTok link.
    result = await svc.account.logout(current, everywhere=everywhere_wanted, unlink=svc.account.powers.allow(claims))
    return JSONResponse({"ended": len(result.ended), "tiktok": result.tiktok}, headers=NO_STORE)


@html_endpoint
async def delete_page(request: Request) -> Response:
    svc = services(request)
    session = await _browser_session(svc, request)
    if session is None:
        return _to_login(svc, "/account/delete")
    token = svc.form_tokens.issue(session.sid, "delete-account", svc.account.clock.now())
    return render_page(request, "delete_confirm.html", {"confirmation": token})


@html_endpoint
async def delete_confirmed(request: Request) -> Response:
    svc, session, form = await _signed_in_post(request)
    if session is None:
        return _to_login(svc, "/account/delete")
    if not svc.form_tokens.check(str(form.get("confirmation") or ""), session.sid, "delete-account",
                                 svc.account.clock.now()):
        raise InvalidRequest("The confirmation has expired. Please confirm again.")
    receipt = await svc.account.delete(session.user_id)
    response = render_page(request, "receipt.html", {"receipt": receipt})
    clear_session_cookie(response, svc.settings)
    return response


async def delete_by_api(request: Request) -> Response:
    """DELETE /account with a bearer token holding the account power: the same deletion, a JSON receipt."""
    svc = services(request)
    bearer = presented_token(request)
    if bearer is None:
        raise InvalidToken("A bearer access token is required.")
    claims = await _account_claims(svc, request, bearer)
    receipt = await svc.account.delete(str(claims["sub"]))
    body: dict[str, Any] = asdict(receipt)
    return JSONResponse(body, headers=NO_STORE)
