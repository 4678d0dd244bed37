"""OpenID Connect endpoints: /authorize, /authorize/resume (back from TikTok), /authorize/consent (the consent
page's answer) and /userinfo."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from broker.errors import InvalidRequest
from broker.flows.authz_request import AuthorizationError, ClientReply
from broker.flows.consent import ConsentRequest
from broker.flows.oidc import AuthorizeStep, ToTikTok
from broker.web.bodies import read_form
from broker.web.browser_guard import require_same_origin
from broker.web.client_addr import client_ip
from broker.web.client_reply import deliver
from broker.web.cookies import read_binding_cookie, read_session_cookie, set_binding_cookie
from broker.web.cors import with_cors
from broker.web.dpop import checked_claims
from broker.web.render import NO_STORE, html_endpoint, render_page
from broker.web.services import services

CONSENT_PURPOSE = "consent"


def _answer(request: Request, step: AuthorizeStep, sid: str | None) -> Response:
    if isinstance(step, ClientReply):
        return deliver(request, step)
    if isinstance(step, ToTikTok):
        response = RedirectResponse(step.location, status_code=302, headers=NO_STORE)
        set_binding_cookie(response, services(request).settings, step.binding_value)
        return response
    assert isinstance(step, ConsentRequest) and sid is not None
    svc = services(request)
    token = svc.form_tokens.issue(sid, f"{CONSENT_PURPOSE}:{step.request_id}", svc.oidc.clock.now())
    return render_page(request, "consent.html", {"consent": step, "csrf_token": token},
                       redirects_to=(step.redirect_uri,))


def _refused(request: Request, error: AuthorizationError) -> Response:
    if error.reply is None:
        raise error  # the client or its redirect URI is unknown: a page, never a redirect
    return deliver(request, error.reply)


@html_endpoint
async def authorize(request: Request) -> Response:
    svc = services(request)
    await svc.limits.check("authorize", ip=client_ip(request), client_id=request.query_params.get("client_id"))
    session = await svc.sessions.resolve(read_session_cookie(request, svc.settings))
    try:
        step = await svc.oidc.authorize(dict(request.query_params), session,
                                        read_binding_cookie(request, svc.settings))
    except AuthorizationError as error:
        return _refused(request, error)
    return _answer(request, step, session.sid if session else None)


@html_endpoint
async def resume(request: Request) -> Response:
    svc = services(request)
    session = await svc.sessions.resolve(read_session_cookie(request, svc.settings))
    try:
        step = await svc.oidc.resume(request.query_params.get("request_id", ""), session,
                                     request.query_params.get("error", ""))
    except AuthorizationError as error:
        return _refused(request, error)
    return _answer(request, step, session.sid if session else None)


@html_endpoint
async def consent(request: Request) -> Response:
    """The consent page's form: Allow or Deny, from this site, by the session it was shown to."""
    svc = services(request)
    require_same_origin(request, svc.settings.issuer)
    session = await svc.sessions.resolve(read_session_cookie(request, svc.settings))
    form = await read_form(request)  # capped: Starlette's own parser would hold up to a gigabyte
    request_id, token, action = (str(form.get(name) or "") for name in ("request_id", "csrf_token", "action"))
    if session is None or action not in ("allow", "deny") or not svc.form_tokens.check(
            token, session.sid, f"{CONSENT_PURPOSE}:{request_id}", svc.oidc.clock.now()):
        raise InvalidRequest("This page has expired. Please start again from the application.")
    try:
        reply = await svc.oidc.decide(request_id, session, allow=action == "allow")
    except AuthorizationError as error:
        return _refused(request, error)
    return deliver(request, reply)


async def userinfo(request: Request) -> Response:
    svc = services(request)
    _, claims = await checked_claims(svc, request)
    answer = await svc.oidc_tokens.userinfo(claims)
    return with_cors(request, JSONResponse(answer, headers=NO_STORE), client_id=str(claims.get("client_id", "")))
