"""The browser's pages: the home page, /login (off to TikTok) and /callback (back from TikTok)."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from broker.flows.login import SignInAbandoned
from broker.web.client_addr import client_ip
from broker.web.cookies import (
    read_binding_cookie,
    read_session_cookie,
    set_binding_cookie,
    set_session_cookie,
)
from broker.web.render import NO_STORE, html_endpoint, render_page
from broker.web.services import services

CLAIMS_SHOWN = ("iss", "sub", "aud", "exp", "iat", "sid", "scope", "tiktok_open_id", "name")


def _shown(name: str, value: object) -> str:
    if name in ("exp", "iat") and isinstance(value, int | float):
        moment = datetime.fromtimestamp(value, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        return f"{value} ({moment})"
    return str(value)


@html_endpoint
async def home(request: Request) -> Response:
    svc = services(request)
    session = await svc.sessions.resolve(read_session_cookie(request, svc.settings))
    if session is None:
        return render_page(request, "home.html", {"signed_in": False})
    issued = svc.sessions.access_token_for(session)
    claims = [(name, _shown(name, issued.claims[name])) for name in CLAIMS_SHOWN if name in issued.claims]
    return render_page(request, "home.html", {"signed_in": True, "session": session, "claims": claims,
                                              "jwt": issued.token})


@html_endpoint
async def login(request: Request) -> Response:
    svc = services(request)
    await svc.limits.check("login", ip=client_ip(request))
    add_scope = request.query_params.get("add_scope")
    # Adding scopes: ask TikTok for what the signed-in user granted so far as well (none when signed out).
    session = await svc.sessions.resolve(read_session_cookie(request, svc.settings)) if add_scope else None
    start = await svc.login.start(return_to=request.query_params.get("return_to"),
                                  binding_value=read_binding_cookie(request, svc.settings),
                                  force_consent=request.query_params.get("prompt") == "login",
                                  add_scope=add_scope, user_id=session.user_id if session else None)
    response = RedirectResponse(start.redirect_url, status_code=302, headers=NO_STORE)
    set_binding_cookie(response, svc.settings, start.binding_value)
    return response


@html_endpoint
async def callback(request: Request) -> Response:
    svc = services(request)
    ip = client_ip(request)
    await svc.limits.check("callback", ip=ip)
    try:
        result = await svc.login.finish(params=dict(request.query_params),
                                        binding_value=read_binding_cookie(request, svc.settings),
                                        user_agent=request.headers.get("user-agent", ""), ip=ip)
    except SignInAbandoned as abandoned:  # an app's sign-in: the app hears why (see /authorize/resume)
        return RedirectResponse(abandoned.location, status_code=303, headers=NO_STORE)
    response = RedirectResponse(result.return_to, status_code=303, headers=NO_STORE)
    set_session_cookie(response, svc.settings, result.cookie_value)
    return response
