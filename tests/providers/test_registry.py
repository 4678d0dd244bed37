"""The provider registry: names to factories, settings passed through, unknown names refused."""

from __future__ import annotations

import httpx
import pytest

from broker.clock import FrozenClock
from broker.providers.registry import ProviderSettings, create_provider, known_providers
from broker.providers.tiktok import TikTokProvider

SECRET = "registry-secret-NEVER-SHOW"


async def test_creates_tiktok_with_the_given_settings() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"{}")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        provider = create_provider("tiktok", http_client=client, client_key="ck", client_secret=SECRET,
                                   authorize_url="http://127.0.0.1:9/v2/auth/authorize/",
                                   api_url="http://127.0.0.1:9", clock=FrozenClock(), timeout_seconds=2.5)
        assert isinstance(provider, TikTokProvider) and provider.name == "tiktok"
        assert provider.authorize_url(state="s", code_verifier="v" * 43, redirect_uri="https://b/callback",
                                      scopes=("user.info.basic",)).startswith("http://127.0.0.1:9/v2/auth/")
        await provider.revoke("act.x")
    assert str(seen[0].url) == "http://127.0.0.1:9/v2/oauth/revoke/"
    assert seen[0].extensions["timeout"] == {"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}


async def test_connect_timeout_is_capped() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        provider = create_provider("tiktok", http_client=client, client_key="ck", client_secret=SECRET,
                                   authorize_url="https://a", api_url="https://b", clock=FrozenClock(),
                                   timeout_seconds=30)
        await provider.revoke("act.x")
    assert seen[0].extensions["timeout"]["connect"] == 3.0 and seen[0].extensions["timeout"]["read"] == 30


@pytest.mark.parametrize(("name", "seconds", "message"), [
    ("google", 5.0, r"unknown provider 'google'.*tiktok"),
    ("TikTok", 5.0, r"known providers: tiktok"),
    ("tiktok", 0.0, "timeout_seconds"),
    ("tiktok", float("nan"), "timeout_seconds"),
])
async def test_refuses_unknown_names_and_bad_timeouts(name: str, seconds: float, message: str) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(ValueError, match=message):
            create_provider(name, http_client=client, client_key="ck", client_secret=SECRET,
                            authorize_url="https://a", api_url="https://b", clock=FrozenClock(),
                            timeout_seconds=seconds)


async def test_settings_repr_hides_the_secret() -> None:
    async with httpx.AsyncClient() as client:
        settings = ProviderSettings(http_client=client, client_key="ck", client_secret=SECRET,
                                    authorize_url="https://a", api_url="https://b", clock=FrozenClock(),
                                    timeout_seconds=1.0)
        assert SECRET not in repr(settings)
    assert known_providers() == ("tiktok",)
