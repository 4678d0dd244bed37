"""Drives the emulator in-process like a TikTok client would: authorize, consent, token, user info."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from starlette.applications import Starlette

from tiktok_emulator.state import EmulatorState

REDIRECT = "http://127.0.0.1:8080/auth/tiktok/callback"
# TikTok's own vector (Android SDK PKCEUtilsTest): challenge = lowercase hex SHA-256 of the verifier.
VERIFIER = "gaeCq5mVvbhA8Ce6w5O9XBVIKMkySgv-_9A-rnhm9Ns"
CHALLENGE = "e6a178b120743d08509508f269652b0bdf91e29332921bc9e9744fd3dd41bfef"
B64URL_CHALLENGE = "5qF4sSB0PQhQlQjyaWUrC9-R4pMykhvJ6XRP091Bv-8"
ALL_SCOPES = "user.info.basic,user.info.profile,user.info.stats"
MARA = "7c1e2d34-5f6a-4b7c-8d9e-0a1b2c3d4e5f"
KEY, SECRET = "emulator-client-key", "emulator-client-secret"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def query_of(response: httpx.Response) -> dict[str, str]:
    """The redirect's query parameters, decoded once (as TikTok tells clients to)."""
    assert response.status_code == 302, response.text
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["location"]).query).items()}


def request_id_of(page: httpx.Response) -> str:
    match = re.search(r'name="request_id" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


class TikTok:
    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8081")

    @property
    def state(self) -> EmulatorState:
        state: EmulatorState = self.app.state.emulator
        return state

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.state.posts.aclose()
        await self.state.webhooks.aclose()

    async def authorize(self, path: str = "/v2/auth/authorize/", /, **overrides: str | None) -> httpx.Response:
        params: dict[str, str | None] = {
            "client_key": KEY, "response_type": "code", "scope": ALL_SCOPES, "redirect_uri": REDIRECT,
            "state": "st4te-xyz", "code_challenge": CHALLENGE, "code_challenge_method": "S256",
            "disable_auto_auth": "1",
        }
        params.update(overrides)
        return await self.client.get(path, params={k: v for k, v in params.items() if v is not None})

    async def consent(self, request_id: str, *, user: str = MARA, display_name: str | None = None,
                      scopes: tuple[str, ...] | None = None, action: str = "allow") -> httpx.Response:
        fields: dict[str, str | list[str]] = {
            "request_id": request_id, "user": user, "action": action,
            "scope": list(scopes if scopes is not None else ALL_SCOPES.split(",")),
        }
        if display_name is not None:
            fields["display_name"] = display_name
        return await self.client.post("/v2/auth/authorize/consent", data=fields)

    async def login(self, *, scopes: tuple[str, ...] | None = None, user: str = MARA,
                    display_name: str | None = None, **authorize: str | None) -> dict[str, str]:
        """Authorize + consent; returns the callback's query (code, scopes, state)."""
        page = await self.authorize(**authorize)
        assert page.status_code == 200, page.text
        return query_of(await self.consent(request_id_of(page), user=user, display_name=display_name,
                                           scopes=scopes))

    async def token(self, **fields: str) -> httpx.Response:
        return await self.client.post("/v2/oauth/token/", data={"client_key": KEY, "client_secret": SECRET, **fields})

    async def exchange(self, code: str, *, verifier: str = VERIFIER, redirect_uri: str = REDIRECT) -> httpx.Response:
        return await self.token(grant_type="authorization_code", code=code, redirect_uri=redirect_uri,
                                code_verifier=verifier)

    async def tokens(self, **login: Any) -> dict[str, Any]:
        """A full successful code flow; returns the token JSON."""
        response = await self.exchange((await self.login(**login))["code"])
        body: dict[str, Any] = response.json()
        assert "access_token" in body, body
        return body

    async def refresh(self, refresh_token: str) -> httpx.Response:
        return await self.token(grant_type="refresh_token", refresh_token=refresh_token)

    async def revoke(self, token: str, *, secret: str = SECRET) -> httpx.Response:
        return await self.client.post("/v2/oauth/revoke/",
                                      data={"client_key": KEY, "client_secret": secret, "token": token})

    async def user_info(self, token: str | None, fields: str | None = "open_id,display_name") -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        params = {"fields": fields} if fields is not None else {}
        return await self.client.get("/v2/user/info/", params=params, headers=headers)
