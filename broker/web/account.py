"""The account area: /account (page), ending a session, logout, and deletion (page with confirmation, or API)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from broker.domain import Session
from broker.errors import InvalidRequest, InvalidToken
from broker.web.bodies import read_form
from broker.web.browser_guard import require_same_origin
from broker.web.client_addr import client_ip
from broker.web.cookies import clear_session_cookie, read_session_cookie
from broker.web.render import NO_STORE, answer_as_api, html_endpoint, render_page
from broker.web.services import Services, services


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


async def _form(request: Request) -> FormData:
    return await read_form(request)


def _when(instant: float) -> str:
    return datetime.fromtimestamp(instant, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


async def _browser_session(svc: Services, request: Request) -> Session | None:
    return await svc.sessions.resolve(read_session_cookie(request, svc.settings))


def _to_login(svc: Services, path: str) -> Response:
    return RedirectResponse(f"{svc.settings.issuer}/login?return_to={path}", status_code=303, headers=NO_STORE)


@html_endpoint
async def account_page(request: Request) -> Response:
    svc = services(request)
    session = await _browser_session(svc, request)
    if session is None:
        return _to_login(svc, "/account")
    profile = await svc.account.profile(session.user_id)
    views = [{"session": view.session, "current": view.current, "last_seen": _when(view.session.last_seen)}
             for view in await svc.account.sessions_of(session)]
    now = svc.account.clock.now()
    return render_page(request, "account.html", {
        "profile": profile, "scopes": [s for s in profile.get("scopes", "").split(",") if s],
        "tiktok_linked": profile.get("tiktok_link", "linked") != "broken", "sessions": views,
        "end_token": svc.form_tokens.issue(session.sid, "end-session", now)})


async def _signed_in_post(request: Request) -> tuple[Services, Session | None, FormData]:
    """A browser form post: from this site (CSRF guard), its session (None when signed out) and its fields."""
    svc = services(request)
    require_same_origin(request, svc.settings.issuer)
    return svc, await _browser_session(svc, request), await _form(request)


@html_endpoint
async def end_session(request: Request) -> Response:
    svc, session, form = await _signed_in_post(request)
    if session is None:
        return _to_login(svc, "/account")
    sid, token = form.get("sid"), form.get("csrf_token")
    if not isinstance(sid, str) or not svc.form_tokens.check(str(token or ""), session.sid, "end-session",
                                                              svc.account.clock.now()):
        raise InvalidRequest("This form has expired. Please try again.")
    await svc.account.end_session(session.user_id, sid)
    return RedirectResponse(f"{svc.settings.issuer}/account", status_code=303, headers=NO_STORE)


@html_endpoint
async def logout(request: Request) -> Response:
    """Cookie (a browser form, origin-checked) or bearer (an app). A session already gone logs out quietly.
    The rate limit, then the token or the origin, are checked before the body is read."""
    svc = services(request)
    bearer = _bearer(request)
    if bearer is not None:
        answer_as_api(request)
    await svc.limits.check("logout", ip=client_ip(request))
    if bearer is not None:
        claims = await svc.tokens.check_access_token(bearer)
    else:
        require_same_origin(request, svc.settings.issuer)
    form = await _form(request)
    everywhere = str(form.get("everywhere", request.query_params.get("everywhere", ""))).lower() in ("true", "1", "on")
    if bearer is not None:
        current = await svc.tokens.session_for(claims)
        if current is None:
            return JSONResponse({"ended": 0}, headers=NO_STORE)
        result = await svc.account.logout(current, everywhere=everywhere)
        return JSONResponse({"ended": len(result.ended), "tiktok": result.tiktok}, headers=NO_STORE)
    raw_target = form.get("post_logout_redirect_uri") or form.get("return_to") or \
        request.query_params.get("post_logout_redirect_uri") or request.query_params.get("return_to")
    target = svc.login.return_urls.check(str(raw_target) if raw_target else None)  # before anything ends
    session = await _browser_session(svc, request)
    if session is not None:
        await svc.account.logout(session, everywhere=everywhere)
    response = RedirectResponse(target, status_code=303, headers=NO_STORE)
    clear_session_cookie(response, svc.settings)
    return response


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
    """DELETE /account with a bearer access JWT: the same deletion, a JSON receipt."""
    svc = services(request)
    bearer = _bearer(request)
    if bearer is None:
        raise InvalidToken("A bearer access token is required.")
    claims = await svc.tokens.check_access_token(bearer)
    receipt = await svc.account.delete(str(claims["sub"]))
    body: dict[str, Any] = asdict(receipt)
    return JSONResponse(body, headers=NO_STORE)
