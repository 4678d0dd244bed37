"""Request bodies are capped: over the cap is 413 in the endpoint's shape, decided before the body is read, and
rate limits and origin checks come before any body is read at all."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette

from broker.app import create_app
from broker.config import RateLimit, Settings
from tests.support.asgi import raw_request

ISSUER = "http://127.0.0.1:8080"
FORM_LIMIT = 16 * 1024  # the documented cap of OAuth and browser forms
FORM = {"content-type": "application/x-www-form-urlencoded"}
FORM_ENDPOINTS = ("/oauth/token", "/oauth/revoke", "/oauth/introspect")
BROWSER_FORMS = ("/logout", "/account/sessions/end", "/account/delete", "/account/apps/revoke", "/authorize/consent")


@pytest.fixture
async def app(base_settings: Settings) -> AsyncIterator[Starlette]:
    application = create_app(base_settings.with_overrides(rate_limit_login=RateLimit(2, 60, 2),
                                                          rate_limit_oauth=RateLimit(2, 60, 2)))
    async with application.router.lifespan_context(application):
        yield application


def oversized_form() -> bytes:
    return b"grant_type=refresh_token&padding=" + b"a" * FORM_LIMIT


async def test_a_declared_length_over_the_cap_is_refused_unread(app: Starlette) -> None:
    for path in (*FORM_ENDPOINTS, "/webhooks/tiktok"):
        # The body itself is never sent: the answer comes from the declared length alone.
        headers = {**FORM, "content-length": str(1 << 30)}
        status, body = await raw_request(app, "POST", path, headers=headers, body=b"")
        assert status == 413, (path, body)
        assert b'"invalid_request"' in body and b"too large" in body, path


async def test_a_streamed_body_is_refused_once_it_passes_the_cap(app: Starlette) -> None:
    for path in FORM_ENDPOINTS:
        status, body = await raw_request(app, "POST", path, headers=FORM, body=oversized_form())
        assert status == 413, (path, body)
        assert body.startswith(b"{") and b'"invalid_request"' in body
    for path in BROWSER_FORMS:
        status, body = await raw_request(app, "POST", path, headers={**FORM, "origin": ISSUER},
                                         body=oversized_form())
        assert status == 413, (path, body)
        assert body.lstrip().startswith(b"<!doctype html>") or b"<html" in body  # a page, like its other errors
    status, body = await raw_request(app, "POST", "/oauth/revoke", headers=FORM, body=b"grant_type=x")
    assert status == 400  # under the cap: read and judged as before


async def test_rate_limits_and_origin_checks_come_before_the_body(app: Starlette) -> None:
    big = oversized_form()
    answers = [(await raw_request(app, "POST", "/oauth/token", headers=FORM, body=big))[0] for _ in range(3)]
    assert answers == [413, 413, 429]  # the third is refused by its address's bucket, body unread
    # A cross-site POST /logout may be an app's RP-initiated logout (its parameters are in the body), so its
    # body is read to tell, but never past the cap: refused unread by its length.
    status, _ = await raw_request(app, "POST", "/logout", headers={**FORM, "origin": "https://evil.example"},
                                  body=big)
    assert status == 413
    answers = [(await raw_request(app, "POST", "/logout", headers={**FORM, "origin": ISSUER}, body=b""))[0]
               for _ in range(2)]
    assert answers == [303, 429]  # logout is rate limited too (the cross-site one above was charged)


async def test_a_cross_site_logout_that_is_not_an_apps_is_refused(app: Starlette) -> None:
    status, _ = await raw_request(app, "POST", "/logout", headers={**FORM, "origin": "https://evil.example"},
                                  body=b"everywhere=true")
    assert status == 403


async def test_a_form_with_too_many_fields_is_a_400(app: Starlette) -> None:
    few = b"token=x&" + b"&".join(b"f%d=1" % n for n in range(10))
    assert (await raw_request(app, "POST", "/oauth/revoke", headers=FORM, body=few))[0] == 200
    many = b"token=x&" + b"&".join(b"f%d=1" % n for n in range(200))  # each field costs parsing: 64 at most
    status, answer = await raw_request(app, "POST", "/oauth/revoke", headers=FORM, body=many)
    assert status == 400 and b'"invalid_request"' in answer
