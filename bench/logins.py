"""Logging in over real HTTP, as a browser would: through the broker, or straight at the emulated TikTok.

`broker_login` is the whole browser journey (/login, TikTok's authorize and consent, /callback); the broker
does the code exchange and user-info call itself. `tiktok_only` makes the same TikTok calls with the
broker's own provider code and nothing else: the baseline that shows what the broker adds.
"""

from __future__ import annotations

import re
import secrets
from urllib.parse import parse_qs, urlsplit

import httpx

from bench.stack import Broker
from broker.clock import SystemClock
from broker.providers.base import Provider
from broker.providers.registry import create_provider
from broker.providers.tiktok import new_code_verifier
from broker.web.cookies import session_cookie_name
from tiktok_emulator.config import DEFAULT_USERS

REQUEST_ID = re.compile(r'name="request_id" value="([^"]+)"')
USER = DEFAULT_USERS[0].open_id
SCOPES = ("user.info.basic", "user.info.profile")


def _expect(response: httpx.Response, status: int) -> httpx.Response:
    if response.status_code != status:
        raise RuntimeError(f"{response.request.method} {response.request.url.path} answered "
                           f"{response.status_code}, expected {status}: {response.text[:200]}")
    return response


async def _consent(client: httpx.AsyncClient, page: httpx.Response) -> str:
    """Allow on the emulator's consent page; returns where TikTok sends the browser (redirect_uri?code=...)."""
    match = REQUEST_ID.search(page.text)
    if match is None:
        raise RuntimeError("the emulator did not show its consent page")
    action = str(page.url.copy_with(query=None)).rstrip("/") + "/consent"
    form = {"request_id": match.group(1), "user": USER, "scope": list(SCOPES), "action": "allow"}
    return _expect(await client.post(action, data=form), 302).headers["location"]


async def start_login(client: httpx.AsyncClient, broker: Broker) -> str:
    """/login (forcing the consent page), then TikTok's consent; returns the /callback URL to visit."""
    client.cookies.clear()  # a browser that has never logged in
    start = _expect(await client.get(f"{broker.url}/login", params={"prompt": "login"}), 302)
    page = _expect(await client.get(start.headers["location"]), 200)
    return await _consent(client, page)


async def finish_login(client: httpx.AsyncClient, broker: Broker, callback_url: str) -> str:
    """/callback; returns the new session cookie's value."""
    done = _expect(await client.get(callback_url), 303)
    cookie = done.cookies.get(session_cookie_name(broker.settings))
    if not cookie:
        raise RuntimeError("/callback set no session cookie")
    return cookie


async def broker_login(client: httpx.AsyncClient, broker: Broker) -> str:
    return await finish_login(client, broker, await start_login(client, broker))


def provider_for(client: httpx.AsyncClient, broker: Broker) -> Provider:
    s = broker.settings
    return create_provider("tiktok", http_client=client, client_key=s.tiktok_client_key,
                           client_secret=s.tiktok_client_secret.reveal(), authorize_url=s.tiktok_authorize_url,
                           api_url=s.tiktok_api_url, clock=SystemClock(), timeout_seconds=s.tiktok_timeout)


async def tiktok_only(client: httpx.AsyncClient, provider: Provider, broker: Broker) -> None:
    """Authorize, consent, code exchange and user info: the TikTok half of a login, without the broker."""
    verifier = new_code_verifier()
    redirect_uri = broker.settings.redirect_uri
    url = provider.authorize_url(state=secrets.token_urlsafe(32), code_verifier=verifier,
                                 redirect_uri=redirect_uri, scopes=SCOPES, force_consent=True)
    location = await _consent(client, _expect(await client.get(url), 200))
    code = parse_qs(urlsplit(location).query)["code"][0]
    tokens = await provider.exchange_code(code=code, redirect_uri=redirect_uri, code_verifier=verifier)
    await provider.fetch_identity(tokens)
