"""OpenID Connect endpoints: /authorize, /authorize/resume (back from TikTok) and /userinfo."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from broker.errors import InvalidToken
from broker.flows.oidc import RedirectToClient
from broker.web.client_addr import client_ip
from broker.web.cookies import read_binding_cookie, read_session_cookie, set_binding_cookie
from broker.web.render import NO_STORE, html_endpoint
from broker.web.services import services


def _redirect(location: str) -> Response:
    return RedirectResponse(location, status_code=302, headers=NO_STORE)


@html_endpoint
async def authorize(request: Request) -> Response:
    svc = services(request)
    await svc.limits.check("authorize", ip=client_ip(request), client_id=request.query_params.get("client_id"))
    session = await svc.sessions.resolve(read_session_cookie(request, svc.settings))
    try:
        step = await svc.oidc.authorize(dict(request.query_params), session,
                                        read_binding_cookie(request, svc.settings))
    except RedirectToClient as error:
        return _redirect(error.location)
    response = _redirect(step.location)
    if step.binding_value is not None:
        set_binding_cookie(response, svc.settings, step.binding_value)
    return response


@html_endpoint
async def resume(request: Request) -> Response:
    svc = services(request)
    session = await svc.sessions.resolve(read_session_cookie(request, svc.settings))
    try:
        location = await svc.oidc.resume(request.query_params.get("request_id", ""), session)
    except RedirectToClient as error:
        return _redirect(error.location)
    return _redirect(location)


async def userinfo(request: Request) -> Response:
    svc = services(request)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("A bearer access token is required.")
    claims = await svc.tokens.check_access_token(token.strip())
    return JSONResponse(await svc.oidc.userinfo(claims), headers=NO_STORE)
