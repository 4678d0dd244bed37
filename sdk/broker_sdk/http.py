"""HTTP clients that keep no cookies: one client serves calls for many users, so nothing one answer sets may
ride along on a call for someone else (the broker uses it for TikTok, its proxy and webhooks, too)."""

from __future__ import annotations

from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx


class _NoCookies(DefaultCookiePolicy):
    """Refuses to store or send any cookie."""

    def set_ok(self, cookie: Any, request: Any) -> bool:
        return False

    def return_ok(self, cookie: Any, request: Any) -> bool:
        return False


def cookieless_client(*, timeout: float | httpx.Timeout | None = 5.0) -> httpx.AsyncClient:
    """An async client that follows no redirects and neither stores nor sends cookies."""
    return httpx.AsyncClient(timeout=timeout, follow_redirects=False, cookies=CookieJar(policy=_NoCookies()))
