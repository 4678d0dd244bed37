"""Answers for an app's redirect URI in its response mode: query, fragment, or form_post (an auto-submitting
form, OAuth 2.0 Form Post Response Mode)."""

from __future__ import annotations

import secrets
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from broker.flows.authz_request import ClientReply
from broker.web.render import NO_STORE
from broker.web.services import services


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def deliver(request: Request, reply: ClientReply) -> Response:
    if reply.response_mode == "form_post":
        return _form_post(request, reply)
    separator = "#" if reply.response_mode == "fragment" else ("&" if "?" in reply.redirect_uri else "?")
    return RedirectResponse(reply.redirect_uri + separator + urlencode(reply.params), status_code=302,
                            headers=NO_STORE)


def _form_post(request: Request, reply: ClientReply) -> Response:
    # The page may run exactly one script (its own, by nonce) and post only to the app's origin.
    nonce = secrets.token_urlsafe(16)
    csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
           f"form-action {_origin(reply.redirect_uri)}; frame-ancestors 'none'; base-uri 'none'")
    response = services(request).templates.TemplateResponse(
        request, "form_post.html", {"action": reply.redirect_uri, "fields": reply.params, "csp_nonce": nonce})
    response.headers.update({**NO_STORE, "Content-Security-Policy": csp, "X-Frame-Options": "DENY",
                             "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"})
    return response
