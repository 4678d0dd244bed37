"""Desktop and command-line apps (RFC 8252): the app listens on a loopback port the system picked, registered
without it, and signs the user in with PKCE; Authlib plays the app, over real HTTP against the emulator."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from authlib.integrations.httpx_client import AsyncOAuth2Client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from broker.config import Settings
from tests.e2e.conftest import ALICE, Stack, live_stack, write_clients
from tests.support.apps import App, authorization_url, pkce, reply_params
from tests.support.browser import Browser
from tests.support.servers import ThreadedServer

REGISTERED = "http://127.0.0.1/callback"  # no port: RFC 8252 section 7.3


class LoopbackListener:
    """The desktop app's one-shot HTTP listener on 127.0.0.1: it keeps the query it was called with."""

    def __init__(self) -> None:
        self.received: list[dict[str, str]] = []
        self.server = ThreadedServer(Starlette(routes=[Route("/callback", self._callback)]))

    async def _callback(self, request: Request) -> Response:
        self.received.append(dict(request.query_params))
        return PlainTextResponse("You may close this window.")

    @property
    def redirect_uri(self) -> str:
        return f"{self.server.url}/callback"


@pytest.fixture
def listener() -> Iterator[LoopbackListener]:
    running = LoopbackListener()
    running.server.start()
    yield running
    running.server.stop()


@pytest.fixture
def stack(base_settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    clients = write_clients(tmp_path, f"""
clients:
  - client_id: cli
    client_name: Uploader CLI
    first_party: true
    redirect_uris: ["{REGISTERED}"]
    scopes: [openid, profile]
""")
    with live_stack(base_settings.with_overrides(clients_file=clients)) as running:
        yield running


def sign_in(stack: Stack, browser: Browser, url: str) -> httpx.Response:
    page = browser.get(url)
    if page.status_code == 200 and page.url.port == stack.emulator.port:
        page = browser.consent(page, user=ALICE)
    return page


async def test_a_cli_signs_in_on_whatever_port_it_got(stack: Stack, listener: LoopbackListener,
                                                      browser: Browser) -> None:
    issuer = stack.broker.url
    assert listener.server.port != 80
    async with AsyncOAuth2Client("cli", scope="openid profile", redirect_uri=listener.redirect_uri,
                                 code_challenge_method="S256", token_endpoint_auth_method="none") as app:
        verifier = secrets.token_urlsafe(48)
        url, state = app.create_authorization_url(f"{issuer}/authorize", code_verifier=verifier)
        page = sign_in(stack, browser, url)
        assert page.status_code == 200 and page.text == "You may close this window."  # the browser reached the app
        (query,) = listener.received
        assert query["state"] == state and query["iss"] == issuer
        token = await app.fetch_token(f"{issuer}/oauth/token", code=query["code"], code_verifier=verifier)
        assert token["token_type"] == "Bearer" and token["id_token"] and token["refresh_token"]
        userinfo = await app.get(f"{issuer}/userinfo")  # Authlib sends the access token
    assert userinfo.json()["name"] == "Mara Example"


def test_the_code_is_bound_to_the_port_it_was_sent_to(stack: Stack, browser: Browser) -> None:
    issuer = stack.broker.url
    app = App("cli", "http://127.0.0.1:53124/callback")
    verifier, challenge = pkce()
    page = browser.get(authorization_url(issuer, app, challenge), follow=False)
    while page.is_redirect and not page.headers["location"].startswith(app.redirect_uri):
        page = browser.get(page.headers["location"], follow=False)
        if page.status_code == 200:
            page = browser.consent(page, user=ALICE, follow=False)
    code = reply_params(page)["code"]
    other_port = {"grant_type": "authorization_code", "code": code, "client_id": "cli", "code_verifier": verifier,
                  "redirect_uri": "http://127.0.0.1:53125/callback"}
    refused = httpx.post(f"{issuer}/oauth/token", data=other_port)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    accepted = httpx.post(f"{issuer}/oauth/token", data={**other_port, "redirect_uri": app.redirect_uri})
    assert accepted.status_code == 200, accepted.text


def test_pkce_is_required_and_other_loopback_uris_are_refused(stack: Stack, browser: Browser) -> None:
    issuer = stack.broker.url
    without_pkce = browser.get(authorization_url(issuer, App("cli", "http://127.0.0.1:53124/callback"), "",
                                                 code_challenge_method=""), follow=False)
    assert reply_params(without_pkce)["error"] == "invalid_request"  # told to the app, on its loopback URI
    for uri in ("http://127.0.0.1:53124/elsewhere", "http://localhost:53124/callback",
                "http://attacker@127.0.0.1:53124/callback"):
        page = browser.get(authorization_url(issuer, App("cli", uri), pkce()[1]), follow=False)
        assert page.status_code == 400 and "redirect_uri" in page.text, uri  # a page: never a redirect
