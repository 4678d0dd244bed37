"""TikTok user/info: fields chosen per granted scope, the {data, error} envelope, mapping to Identity."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from broker.clock import FrozenClock
from broker.domain import ProviderTokens
from broker.errors import BrokerError, UpstreamError, UpstreamRejected, UpstreamUnavailable
from broker.providers.tiktok import TikTokProvider

SECRET = "client-secret-NEVER-LOG"
ACCESS = "act.user-info-ACCESS-TOKEN"
REFRESH = "rft.user-info-REFRESH-TOKEN"
OPEN_ID = "7c1e2d34-open-id"
LOG_ID = "20260105093115F00DBA11C0FFEE4242AB"
BASIC = ["open_id", "union_id", "avatar_url", "avatar_url_100", "avatar_large_url", "display_name"]
PROFILE = ["username", "bio_description", "profile_deep_link", "is_verified"]
STATS = ["follower_count", "following_count", "likes_count", "video_count"]
OK = {"code": "ok", "message": "", "log_id": LOG_ID}


def tokens(*scopes: str, subject: str = OPEN_ID) -> ProviderTokens:
    return ProviderTokens(subject=subject, access_token=ACCESS, refresh_token=REFRESH, expires_at=0.0,
                          refresh_expires_at=0.0, scopes=frozenset(scopes or ("user.info.basic",)))


def envelope(user: Any, error: Any = OK) -> dict[str, Any]:
    return {"data": {"user": user}, "error": error}


def failure(code: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": "operator text", "log_id": LOG_ID}}


class Upstream:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.response = httpx.Response(200, json=envelope({"open_id": OPEN_ID, "display_name": "Mara"}))
        self.provider: TikTokProvider

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.response

    def reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.response = httpx.Response(status, content=content, headers=headers)


@pytest.fixture
async def up() -> AsyncIterator[Upstream]:
    upstream = Upstream()
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as client:
        upstream.provider = TikTokProvider(client, client_key="key", client_secret=SECRET,
                                           clock=FrozenClock(), api_url="https://api.test")
        yield upstream


@pytest.mark.parametrize(("scopes", "fields"), [
    (("user.info.basic",), BASIC),
    (("user.info.basic", "user.info.profile"), BASIC + PROFILE),
    (("user.info.basic", "user.info.stats"), BASIC + STATS),
    (("user.info.stats", "user.info.profile", "user.info.basic", "video.list"), BASIC + PROFILE + STATS),
])
async def test_request_shape_and_fields_per_scope(up: Upstream, scopes: tuple[str, ...],
                                                  fields: list[str]) -> None:
    await up.provider.fetch_identity(tokens(*scopes))
    request = up.requests[-1]
    assert request.method == "GET" and request.url.path == "/v2/user/info/"
    assert request.url.host == "api.test" and request.content == b""
    assert request.headers["authorization"] == f"Bearer {ACCESS}"
    assert request.url.params["fields"].split(",") == fields
    assert set(request.url.params) == {"fields"}  # v2: no open_id or token in the query


async def test_full_profile_maps_to_identity(up: Upstream) -> None:
    up.reply(200, envelope({
        "open_id": OPEN_ID, "union_id": "union-1", "display_name": "Mara Example",
        "avatar_url": "https://cdn/a.jpg", "avatar_url_100": "https://cdn/a100.jpg",
        "avatar_large_url": "https://cdn/a1080.jpg", "username": "mara.example", "bio_description": "hi",
        "profile_deep_link": "https://vm.tiktok.com/x", "is_verified": False, "follower_count": 10,
        "following_count": 0, "likes_count": 3, "video_count": 2, "unknown_new_field": {"x": 1}}))
    identity = await up.provider.fetch_identity(tokens("user.info.basic", "user.info.profile", "user.info.stats"))
    assert (identity.provider, identity.subject, identity.union_id) == ("tiktok", OPEN_ID, "union-1")
    assert (identity.display_name, identity.username) == ("Mara Example", "mara.example")
    assert identity.avatar_url == "https://cdn/a1080.jpg"
    assert identity.profile == {
        "avatar_url": "https://cdn/a.jpg", "avatar_url_100": "https://cdn/a100.jpg",
        "avatar_large_url": "https://cdn/a1080.jpg", "bio": "hi", "profile_url": "https://vm.tiktok.com/x",
        "verified": False, "follower_count": 10, "following_count": 0, "likes_count": 3, "video_count": 2}


@pytest.mark.parametrize(("user", "avatar"), [
    ({"avatar_url": "https://cdn/a.jpg", "avatar_url_100": "https://cdn/100.jpg"}, "https://cdn/100.jpg"),
    ({"avatar_url": "https://cdn/a.jpg", "avatar_large_url": ""}, "https://cdn/a.jpg"),
    ({"avatar_large_url": None}, ""),
])
async def test_best_avatar_and_optional_fields(up: Upstream, user: dict[str, Any], avatar: str) -> None:
    up.reply(200, envelope({"open_id": OPEN_ID, **user}))  # union_id, display_name, username omitted
    identity = await up.provider.fetch_identity(tokens())
    assert identity.avatar_url == avatar
    assert identity.union_id is None and identity.username is None and identity.display_name == ""


async def test_missing_open_id_falls_back_to_grant_subject(up: Upstream) -> None:
    up.reply(200, envelope({"display_name": "Mara", "union_id": ""}))
    identity = await up.provider.fetch_identity(tokens())
    assert identity.subject == OPEN_ID and identity.union_id is None


FAILURES: list[tuple[str, int, Any, type[BrokerError]]] = [
    ("access_token_invalid", 401, failure("access_token_invalid"), UpstreamRejected),
    ("scope_not_authorized", 401, failure("scope_not_authorized"), UpstreamRejected),
    ("scope_permission_missed", 400, failure("scope_permission_missed"), UpstreamRejected),
    ("error with HTTP 200", 200, failure("access_token_invalid"), UpstreamRejected),
    ("invalid_params", 400, failure("invalid_params"), UpstreamError),
    ("unknown code with data", 200, envelope({"open_id": OPEN_ID}, {"code": "nope", "log_id": LOG_ID}),
     UpstreamError),
    ("internal_error", 500, failure("internal_error"), UpstreamUnavailable),
    ("rate limited in a 200", 200, failure("rate_limit_exceeded"), UpstreamUnavailable),
    ("no error object", 200, {"data": {"user": {"open_id": OPEN_ID}}}, UpstreamError),
    ("error is a string", 200, {"data": {"user": {}}, "error": "ok"}, UpstreamError),
    ("no data", 200, {"error": OK}, UpstreamError),
    ("user is a list", 200, envelope([{"open_id": OPEN_ID}]), UpstreamError),
    ("open_id mismatch", 200, envelope({"open_id": "someone-else"}), UpstreamError),
    ("open_id a number", 200, envelope({"open_id": 7}), UpstreamError),
    ("count as a string", 200, envelope({"open_id": OPEN_ID, "follower_count": "12"}), UpstreamError),
    ("verified as a string", 200, envelope({"open_id": OPEN_ID, "is_verified": "true"}), UpstreamError),
    ("count as a bool", 200, envelope({"open_id": OPEN_ID, "video_count": True}), UpstreamError),
    ("not JSON", 200, b"<html>oops</html>", UpstreamError),
    ("JSON list", 200, [], UpstreamError),
]


@pytest.mark.parametrize(("status", "body", "expected"), [case[1:] for case in FAILURES],
                         ids=[case[0] for case in FAILURES])
async def test_failures_map_to_our_errors(up: Upstream, caplog: pytest.LogCaptureFixture, status: int,
                                          body: Any, expected: type[BrokerError]) -> None:
    up.reply(status, body)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(BrokerError) as caught:
        await up.provider.fetch_identity(tokens())
    assert type(caught.value) is expected
    assert LOG_ID not in caught.value.description
    if not isinstance(body, bytes) and LOG_ID in json.dumps(body):
        assert LOG_ID in caught.value.log_detail
        assert any(LOG_ID in r.getMessage() for r in caplog.records if r.name == "broker.providers.tiktok")
    for value in (ACCESS, REFRESH, SECRET, "someone-else", OPEN_ID):
        assert value not in caplog.text and value not in caught.value.log_detail


async def test_token_and_scope_problems_say_so(up: Upstream) -> None:
    up.reply(401, failure("access_token_invalid"))
    with pytest.raises(UpstreamRejected) as invalid:
        await up.provider.fetch_identity(tokens())
    up.reply(400, failure("scope_permission_missed"))
    with pytest.raises(UpstreamRejected) as scope:
        await up.provider.fetch_identity(tokens())
    assert "no longer valid" in invalid.value.description
    assert "permission" in scope.value.description and "no longer valid" not in scope.value.description
    assert invalid.value.status == scope.value.status == 400


async def test_rate_limit_honours_retry_after(up: Upstream) -> None:
    up.reply(429, failure("rate_limit_exceeded"), headers={"Retry-After": "30"})
    with pytest.raises(UpstreamUnavailable) as caught:
        await up.provider.fetch_identity(tokens())
    assert caught.value.retry_after == 30


async def test_timeout_is_unavailable(up: Upstream) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(slow)) as client:
        provider = TikTokProvider(client, client_key="key", client_secret=SECRET, clock=FrozenClock())
        with pytest.raises(UpstreamUnavailable) as caught:
            await provider.fetch_identity(tokens())
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
