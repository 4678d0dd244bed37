"""Devices without a browser (RFC 8628): POST /oauth/device_authorization for the device, and the /device pages
where a signed-in person enters the device's code (GET and POST /device) and allows or denies it
(POST /device/confirm). Typed codes are rate limited per client address and per user: a code has 34 bits."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from broker.domain import Session
from broker.errors import InvalidClient, InvalidRequest
from broker.flows.device import DeviceApproval
from broker.web.bodies import read_form
from broker.web.browser_guard import require_same_origin
from broker.web.client_addr import client_ip
from broker.web.cookies import read_session_cookie
from broker.web.oauth import authenticate_client, limited_form, text
from broker.web.render import NO_STORE, html_endpoint, render_page
from broker.web.services import Services, services

ENTER_PURPOSE = "device"
CONFIRM_PURPOSE = "device-confirm"
UNKNOWN_CODE = "That code is not valid, or has expired. Check the code on your device and try again."


async def device_authorization(request: Request) -> Response:
    """RFC 8628 section 3.1: a device (a public client, or a confidential one with its secret) starts."""
    svc = services(request)
    form = await limited_form(svc, request, "device_authorization")
    client = authenticate_client(svc, request, form, required=False)
    if client is None:
        raise InvalidClient("The device authorization request needs the client's client_id.")
    answer = await svc.device.start(client, text(form, "scope"), user_agent=request.headers.get("user-agent", ""))
    return JSONResponse(answer, headers=NO_STORE)


async def _signed_in(svc: Services, request: Request) -> Session | None:
    return await svc.sessions.resolve(read_session_cookie(request, svc.settings))


def _to_login(svc: Services, user_code: str | None) -> Response:
    back = "/device" + (f"?{urlencode({'user_code': user_code[:32]})}" if user_code else "")
    return RedirectResponse(f"{svc.settings.issuer}/login?{urlencode({'return_to': back})}", status_code=303,
                            headers=NO_STORE)


def _enter_page(svc: Services, request: Request, session: Session, *, typed: str = "", problem: str = "",
                status_code: int = 200) -> Response:
    token = svc.form_tokens.issue(session.sid, ENTER_PURPOSE, svc.device.clock.now())
    return render_page(request, "device.html", {"step": "enter", "typed": typed[:32], "problem": problem,
                                                "csrf_token": token}, status_code=status_code)


def _confirm_page(svc: Services, request: Request, session: Session, approval: DeviceApproval) -> Response:
    token = svc.form_tokens.issue(session.sid, f"{CONFIRM_PURPOSE}:{approval.user_code}", svc.device.clock.now())
    return render_page(request, "device.html", {"step": "confirm", "approval": approval, "csrf_token": token})


async def _charged(svc: Services, request: Request, session: Session) -> None:
    """Each code looked up costs the address and the signed-in user one guess."""
    await svc.limits.check("device", ip=client_ip(request), user_id=session.user_id)


@html_endpoint
async def device_page(request: Request) -> Response:
    """GET /device: sign in first (with TikTok) if need be; the code from verification_uri_complete is shown for
    the person to compare and confirm, never taken as an answer."""
    svc = services(request)
    typed = request.query_params.get("user_code")
    session = await _signed_in(svc, request)
    if session is None:
        return _to_login(svc, typed)
    if not typed:
        return _enter_page(svc, request, session)
    await _charged(svc, request, session)
    return await _confirm_or_ask_again(svc, request, session, typed)


async def _confirm_or_ask_again(svc: Services, request: Request, session: Session, typed: str) -> Response:
    """The confirmation page for a pending code, or the entry page again (400) for a code that is not one."""
    approval = await svc.device.pending(typed)
    if approval is None:
        return _enter_page(svc, request, session, typed=typed, problem=UNKNOWN_CODE, status_code=400)
    return _confirm_page(svc, request, session, approval)


@html_endpoint
async def enter_code(request: Request) -> Response:
    """POST /device: the code the person typed."""
    svc = services(request)
    require_same_origin(request, svc.settings.issuer)
    session = await _signed_in(svc, request)
    if session is None:
        return _to_login(svc, None)
    await _charged(svc, request, session)
    form = await read_form(request)
    typed, token = str(form.get("user_code") or ""), str(form.get("csrf_token") or "")
    if not svc.form_tokens.check(token, session.sid, ENTER_PURPOSE, svc.device.clock.now()):
        raise InvalidRequest("This page has expired. Please enter the code again.")
    return await _confirm_or_ask_again(svc, request, session, typed)


@html_endpoint
async def confirm(request: Request) -> Response:
    """POST /device/confirm: Allow or Deny, from this site, by the session the confirmation was shown to."""
    svc = services(request)
    require_same_origin(request, svc.settings.issuer)
    session = await _signed_in(svc, request)
    if session is None:
        return _to_login(svc, None)
    form = await read_form(request)
    typed, token, action = (str(form.get(name) or "") for name in ("user_code", "csrf_token", "action"))
    if action not in ("allow", "deny") or not svc.form_tokens.check(
            token, session.sid, f"{CONFIRM_PURPOSE}:{typed}", svc.device.clock.now()):
        raise InvalidRequest("This page has expired. Please enter the code again.")
    approval = await svc.device.decide(typed, session, allow=action == "allow")
    if approval is None:
        return _enter_page(svc, request, session, typed=typed, problem=UNKNOWN_CODE, status_code=400)
    return render_page(request, "device.html", {"step": "done", "approval": approval, "allowed": action == "allow"})
