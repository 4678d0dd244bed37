"""The broker's two cookies: the session, and the short-lived login binding. Names, flags and lifetimes."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from broker.config import Settings


def _name(settings: Settings, base: str) -> str:
    # __Host- makes the browser refuse the cookie unless it is Secure, host-only and Path=/ (no subdomain can
    # plant or read it). Browsers reject Secure cookies over plain http, so local http issuers drop the prefix.
    return f"__Host-{base}" if settings.secure_cookies else base


def session_cookie_name(settings: Settings) -> str:
    return _name(settings, "broker_session")


def binding_cookie_name(settings: Settings) -> str:
    return _name(settings, "broker_login")


def read_session_cookie(request: Request, settings: Settings) -> str | None:
    return request.cookies.get(session_cookie_name(settings))


def read_binding_cookie(request: Request, settings: Settings) -> str | None:
    return request.cookies.get(binding_cookie_name(settings))


def set_session_cookie(response: Response, settings: Settings, value: str) -> None:
    response.set_cookie(session_cookie_name(settings), value, max_age=settings.session_ttl, path="/",
                        secure=settings.secure_cookies, httponly=True, samesite="lax")


def set_binding_cookie(response: Response, settings: Settings, value: str) -> None:
    # SameSite=Lax still travels on TikTok's top-level redirect back to /callback.
    response.set_cookie(binding_cookie_name(settings), value, max_age=settings.login_ttl, path="/",
                        secure=settings.secure_cookies, httponly=True, samesite="lax")


def clear_session_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(session_cookie_name(settings), path="/", secure=settings.secure_cookies,
                           httponly=True, samesite="lax")
