"""Responses in the broker's two shapes: HTML pages under a strict CSP, and OAuth-style JSON."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from broker.errors import BrokerError
from broker.web.services import services

F = TypeVar("F", bound=Callable[..., Any])

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def html_endpoint(endpoint: F) -> F:
    """Mark an endpoint whose errors are shown to people as a page rather than as JSON."""
    endpoint.renders_html = True  # type: ignore[attr-defined]
    return endpoint


def answer_as_api(request: Request) -> None:
    """An app (not a browser) is calling a page's endpoint: its errors are JSON, like the rest of its answer."""
    request.state.api_caller = True


def wants_html(request: Request) -> bool:
    if getattr(request.state, "api_caller", False):
        return False
    endpoint = request.scope.get("endpoint")
    return bool(getattr(endpoint, "renders_html", False))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def render_page(request: Request, template: str, context: Mapping[str, object], *,
                status_code: int = 200, headers: Mapping[str, str] | None = None,
                redirects_to: tuple[str, ...] = ()) -> HTMLResponse:
    """`redirects_to`: URLs the page's forms end up at through a redirect (an app's redirect URI): browsers hold
    those redirects to form-action too."""
    svc = services(request)
    nonce = secrets.token_urlsafe(16)
    # Avatars come from TikTok's CDN (https) or, in development, from the emulator's origin.
    img_sources = " ".join(sorted({"https:", "data:", _origin(svc.settings.tiktok_api_url)}))
    form_action = " ".join(("'self'", *sorted({_origin(url) for url in redirects_to})))
    csp = (f"default-src 'none'; style-src 'nonce-{nonce}'; img-src {img_sources}; "
           f"form-action {form_action}; frame-ancestors 'none'; base-uri 'none'")
    response = svc.templates.TemplateResponse(
        request, template, {**context, "csp_nonce": nonce, "issuer": svc.settings.issuer},
        status_code=status_code)
    response.headers.update({**NO_STORE, "Content-Security-Policy": csp, "X-Frame-Options": "DENY",
                             "Referrer-Policy": "same-origin", "X-Content-Type-Options": "nosniff",
                             **(headers or {})})
    return response


def error_headers(error: BrokerError) -> dict[str, str]:
    headers = dict(NO_STORE)
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    if error.code == "invalid_client":
        headers["WWW-Authenticate"] = 'Basic realm="tiktok-broker"'
    elif error.status == 401:
        headers["WWW-Authenticate"] = f'Bearer error="{error.code}"'
    headers.update(getattr(error, "headers", {}))  # DPoP's challenge and nonce (RFC 9449)
    return headers


def json_error(error: BrokerError, *, extra_headers: Mapping[str, str] | None = None) -> Response:
    body = {"error": error.code, "error_description": error.description}
    return JSONResponse(body, status_code=error.status, headers={**error_headers(error), **(extra_headers or {})})


def html_error(request: Request, error: BrokerError) -> Response:
    return render_page(request, "error.html", {"code": error.code, "message": error.description,
                                               "status": error.status},
                       status_code=error.status, headers=error_headers(error))
