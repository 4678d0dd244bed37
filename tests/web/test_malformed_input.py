"""Malformed input found by an attack review: each is a clear refusal in its endpoint's shape, never a 500."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from ipaddress import ip_network

import httpx
import pytest
from starlette.applications import Starlette

from broker.app import create_app
from broker.config import Settings
from tests.support.asgi import raw_request

ISSUER = "http://127.0.0.1:8080"


@pytest.fixture
async def trusting_app(base_settings: Settings) -> AsyncIterator[Starlette]:
    """A broker behind a gateway on loopback, whose forwarding headers it believes."""
    app = create_app(base_settings.with_overrides(trusted_proxies=(ip_network("127.0.0.1/32"),)))
    async with app.router.lifespan_context(app):
        yield app


def signed(body: bytes, t: str | None = None) -> dict[str, str]:
    t = t or str(int(time.time()))
    digest = hmac.new(b"emulator-client-secret", t.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"TikTok-Signature": f"t={t},s={digest}", "Content-Type": "application/json"}


async def test_an_unparseable_return_url_is_a_400_page(client: httpx.AsyncClient) -> None:
    login = await client.get("/login", params={"return_to": "http://["})
    assert login.status_code == 400
    assert login.headers["content-type"].startswith("text/html") and "invalid_request" in login.text
    logout = await client.post("/logout", data={"return_to": "http://[::1"}, headers={"Origin": ISSUER})
    assert logout.status_code == 400 and "invalid_request" in logout.text


async def test_an_unparseable_original_url_from_the_gateway_still_sends_the_visitor_to_log_in(
        trusting_app: Starlette) -> None:
    status, body = await raw_request(trusting_app, "GET", "/auth/verify", headers={"x-original-url": "http://[/x"})
    assert status == 401, body
    assert b'"invalid_token"' in body


async def test_a_query_that_is_not_utf8_does_not_break_the_error_answer(trusting_app: Starlette) -> None:
    for host in ("[", "127.0.0.1:8080"):
        status, body = await raw_request(trusting_app, "GET", "/login", query=b"return_to=//evil.example&x=\x80",
                                         headers={"host": host})
        assert status == 400, body
        assert b"invalid_request" in body


async def test_webhook_timestamps_int_refuses_and_non_ascii_signatures_are_refused(
        trusting_app: Starlette) -> None:
    body = b'{"client_key": "emulator-client-key"}'
    superscript = "\u00b2\u00b3"  # digits to str.isdigit(), not to int()
    digest = hmac.new(b"emulator-client-secret", superscript.encode() + b"." + body, hashlib.sha256).hexdigest()
    for header in (f"t={superscript},s={digest}", "t=123,s=" + "\u00e9" * 64):
        status, answer = await raw_request(trusting_app, "POST", "/webhooks/tiktok", body=body,
                                           headers={"tiktok-signature": header, "content-type": "application/json"})
        assert status == 401, (header, answer)
        assert b'"invalid_signature"' in answer


async def test_a_signed_webhook_body_nested_too_deep_is_a_400(client: httpx.AsyncClient) -> None:
    body = b"[" * 50_000
    refused = await client.post("/webhooks/tiktok", content=body, headers=signed(body))
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "invalid_request"


async def test_no_redirect_is_built_from_the_host_header(trusting_app: Starlette) -> None:
    status, body = await raw_request(trusting_app, "GET", "/login/", headers={"host": "evil.example"})
    assert status == 404, body
    status, body = await raw_request(trusting_app, "GET", "/tiktok/\n", query=b"\x80")
    assert status == 404, body
