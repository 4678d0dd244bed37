"""TikTok OAuth leg: PKCE, authorize URL, code exchange, refresh, revoke, and their error mapping."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from broker.clock import FrozenClock
from broker.errors import BrokerError, UpstreamError, UpstreamRefusedRequest, UpstreamRejected, UpstreamUnavailable
from broker.providers.tiktok import REFRESH_PATIENCE, TikTokProvider, new_code_verifier, pkce_challenge

NOW = 1_800_000_000.0
KEY = "awq3k7exampl3key"
SECRET = "Zk2-client-secret-NEVER-LOG"
CODE = "R7aXk2mP9vQ1sLdE4tYw0Hn6-CODE"
VERIFIER = "gaeCq5mVvbhA8Ce6w5O9XBVIKMkySgv-_9A-rnhm9Ns"
ACCESS = "act.4Fq9Lr2Ws8-ACCESS-TOKEN"
REFRESH = "rft.Jm3Pz8Qk1-REFRESH-TOKEN"
REDIRECT = "https://broker.example.com/callback"
LOG_ID = "20260105093012A1B2C3D4E5F60718293A"
TIMEOUT = httpx.Timeout(7.0, connect=2.0)
SENSITIVE = (SECRET, CODE, VERIFIER, ACCESS, REFRESH)

GOOD = {"access_token": ACCESS, "expires_in": 1234, "open_id": "open-1", "refresh_expires_in": 98765,
        "refresh_token": REFRESH, "scope": "user.info.basic,user.info.profile", "token_type": "Bearer"}


class Upstream:
    """A MockTransport handler that records requests and answers with whatever the test queued."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.answer: Callable[[httpx.Request], httpx.Response] = lambda r: httpx.Response(200, json=GOOD)
        self.provider: TikTokProvider

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)

    def reply(self, status: int = 200, body: Any = None, *, content: bytes | None = None,
              headers: dict[str, str] | None = None) -> None:
        raw = content if content is not None else json.dumps(body).encode()
        self.answer = lambda r: httpx.Response(status, content=raw, headers=headers)

    def fail(self, exc_type: type[httpx.TransportError]) -> None:
        def raise_(request: httpx.Request) -> httpx.Response:
            raise exc_type("boom", request=request)
        self.answer = raise_

    def form(self) -> dict[str, str]:
        parsed = parse_qs(self.requests[-1].content.decode(), keep_blank_values=True, strict_parsing=True)
        assert all(len(v) == 1 for v in parsed.values())
        return {k: v[0] for k, v in parsed.items()}


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
async def up(clock: FrozenClock) -> AsyncIterator[Upstream]:
    upstream = Upstream()
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as client:
        upstream.provider = TikTokProvider(client, client_key=KEY, client_secret=SECRET, clock=clock,
                                           api_url="https://api.test/", timeout=TIMEOUT)
        yield upstream


async def exchange(up: Upstream) -> Any:
    return await up.provider.exchange_code(code=CODE, redirect_uri=REDIRECT, code_verifier=VERIFIER)


async def refresh(up: Upstream) -> Any:
    return await up.provider.refresh(REFRESH)


async def revoke(up: Upstream) -> Any:
    return await up.provider.revoke(ACCESS)


# -- PKCE and the authorize URL --


def test_pkce_challenge_is_tiktoks_hex_not_base64url() -> None:
    assert pkce_challenge(VERIFIER) == "e6a178b120743d08509508f269652b0bdf91e29332921bc9e9744fd3dd41bfef"


def test_new_code_verifier_is_long_random_and_in_charset() -> None:
    verifiers = {new_code_verifier() for _ in range(50)}
    assert len(verifiers) == 50
    for verifier in verifiers:
        assert re.fullmatch(r"[A-Za-z0-9\-._~]{43,128}", verifier)


async def test_authorize_url_carries_tiktok_parameters(up: Upstream) -> None:
    url = up.provider.authorize_url(state="st-1", code_verifier=VERIFIER, redirect_uri=REDIRECT,
                                    scopes=("user.info.basic", "user.info.profile", "user.info.basic"))
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "www.tiktok.com", "/v2/auth/authorize/")
    assert parse_qs(parts.query) == {
        "client_key": [KEY], "response_type": ["code"], "scope": ["user.info.basic,user.info.profile"],
        "redirect_uri": [REDIRECT], "state": ["st-1"], "code_challenge": [pkce_challenge(VERIFIER)],
        "code_challenge_method": ["S256"]}
    assert SECRET not in url and VERIFIER not in url


async def test_authorize_url_force_consent_and_custom_endpoint(clock: FrozenClock) -> None:
    async with httpx.AsyncClient() as client:
        provider = TikTokProvider(client, client_key=KEY, client_secret=SECRET, clock=clock,
                                  authorize_url="http://127.0.0.1:9000/v2/auth/authorize/?app=1")
        url = provider.authorize_url(state="s", code_verifier=VERIFIER, redirect_uri=REDIRECT,
                                     scopes=("user.info.basic",), force_consent=True)
        query = parse_qs(urlsplit(url).query)
        assert query["disable_auto_auth"] == ["1"] and query["app"] == ["1"]
        assert url.startswith("http://127.0.0.1:9000/v2/auth/authorize/?")
        with pytest.raises(ValueError, match="scope"):
            provider.authorize_url(state="s", code_verifier=VERIFIER, redirect_uri=REDIRECT, scopes=())
        assert SECRET not in repr(provider)


# -- token endpoint: request shapes and success --


async def test_exchange_code_request_shape_and_parsing(up: Upstream, clock: FrozenClock) -> None:
    tokens = await exchange(up)
    request = up.requests[-1]
    assert request.method == "POST" and str(request.url) == "https://api.test/v2/oauth/token/"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert "authorization" not in request.headers  # credentials in the body, never Basic
    assert request.extensions["timeout"] == TIMEOUT.as_dict()
    assert up.form() == {"client_key": KEY, "client_secret": SECRET, "code": CODE,
                         "grant_type": "authorization_code", "redirect_uri": REDIRECT,
                         "code_verifier": VERIFIER}
    assert tokens.subject == "open-1" and tokens.access_token == ACCESS and tokens.refresh_token == REFRESH
    assert tokens.expires_at == NOW + 1234 and tokens.refresh_expires_at == NOW + 98765
    assert tokens.scopes == frozenset({"user.info.basic", "user.info.profile"})


async def test_refresh_request_shape_and_rotated_tokens(up: Upstream, clock: FrozenClock) -> None:
    clock.advance(500)
    up.reply(200, {**GOOD, "access_token": "act.new", "refresh_token": "rft.new", "expires_in": 7200,
                   "scope": "user.info.basic"})
    tokens = await refresh(up)
    assert up.form() == {"client_key": KEY, "client_secret": SECRET, "grant_type": "refresh_token",
                         "refresh_token": REFRESH}
    assert "authorization" not in up.requests[-1].headers
    # Once sent, a refresh's answer is awaited patiently (TikTok has rotated by then); connecting stays quick.
    assert up.requests[-1].extensions["timeout"] == {**TIMEOUT.as_dict(), "read": REFRESH_PATIENCE}
    assert (tokens.access_token, tokens.refresh_token) == ("act.new", "rft.new")
    assert tokens.expires_at == NOW + 500 + 7200 and tokens.scopes == frozenset({"user.info.basic"})


# -- token endpoint: every failure --

def oauth_error(code: str) -> dict[str, str]:
    return {"error": code, "error_description": "details for the operator", "log_id": LOG_ID}


TOKEN_FAILURES: list[tuple[str, int, Any, type[BrokerError]]] = [
    ("invalid_grant with 200", 200, oauth_error("invalid_grant"), UpstreamRejected),
    ("invalid_grant with 400", 400, oauth_error("invalid_grant"), UpstreamRejected),
    ("invalid_client with 200", 200, oauth_error("invalid_client"), UpstreamError),
    ("invalid_request with 400", 400, oauth_error("invalid_request"), UpstreamRefusedRequest),
    ("server_error with 200", 200, oauth_error("server_error"), UpstreamUnavailable),
    ("temporarily_unavailable", 200, oauth_error("temporarily_unavailable"), UpstreamUnavailable),
    ("error wins over access_token", 200, {**GOOD, **oauth_error("invalid_client")}, UpstreamError),
    ("500", 500, {"error": "server_error", "log_id": LOG_ID}, UpstreamUnavailable),
    ("503 garbage", 503, "<html>down</html>", UpstreamUnavailable),
    ("500 garbage", 500, "Internal Server Error", UpstreamUnavailable),
    ("500 trumps invalid_grant", 500, oauth_error("invalid_grant"), UpstreamUnavailable),
    ("JSON list", 200, [GOOD], UpstreamError),
    ("JSON string", 200, "access_token", UpstreamError),
    ("missing access_token", 200, {k: v for k, v in GOOD.items() if k != "access_token"}, UpstreamError),
    ("missing refresh_token", 200, {k: v for k, v in GOOD.items() if k != "refresh_token"}, UpstreamError),
    ("missing open_id", 200, {k: v for k, v in GOOD.items() if k != "open_id"}, UpstreamError),
    ("missing scope", 200, {k: v for k, v in GOOD.items() if k != "scope"}, UpstreamError),
    ("expires_in a string", 200, {**GOOD, "expires_in": "7200"}, UpstreamError),
    ("expires_in a bool", 200, {**GOOD, "expires_in": True}, UpstreamError),
    ("expires_in a float", 200, {**GOOD, "expires_in": 7200.5}, UpstreamError),
    ("expires_in zero", 200, {**GOOD, "expires_in": 0}, UpstreamError),
    ("refresh_expires_in null", 200, {**GOOD, "refresh_expires_in": None}, UpstreamError),
    ("access_token a number", 200, {**GOOD, "access_token": 12}, UpstreamError),
    ("access_token empty", 200, {**GOOD, "access_token": ""}, UpstreamError),
    ("token_type not bearer", 200, {**GOOD, "token_type": "mac"}, UpstreamError),
    ("v1 shape wrapped in data", 200, {"data": GOOD, "message": "success"}, UpstreamError),
]


@pytest.mark.parametrize("call", [exchange, refresh], ids=["exchange", "refresh"])
@pytest.mark.parametrize(("status", "body", "expected"), [case[1:] for case in TOKEN_FAILURES],
                         ids=[case[0] for case in TOKEN_FAILURES])
async def test_token_failures_map_to_our_errors(up: Upstream, call: Callable[[Upstream], Any], status: int,
                                                body: Any, expected: type[BrokerError]) -> None:
    if isinstance(body, str):
        up.reply(status, content=body.encode())
    else:
        up.reply(status, body)
    with pytest.raises(BrokerError) as caught:
        await call(up)
    assert type(caught.value) is expected  # exact: UpstreamUnavailable is also an UpstreamError
    statuses: dict[type[BrokerError], int] = {UpstreamRejected: 400, UpstreamError: 502, UpstreamUnavailable: 503,
                                              UpstreamRefusedRequest: 502}
    assert caught.value.status == statuses[expected]
    assert LOG_ID not in caught.value.description
    if isinstance(body, dict) and body.get("log_id"):
        assert LOG_ID in caught.value.log_detail


@pytest.mark.parametrize("content", [b"<html>Bad gateway</html>", b"", b"\xff\xfe\x00garbage",
                                     b"[" * 100_000, b'{"access_token": '])
async def test_token_endpoint_garbage_is_a_502(up: Upstream, content: bytes) -> None:
    up.reply(200, content=content, headers={"X-Tt-Logid": LOG_ID})
    with pytest.raises(UpstreamError) as caught:
        await exchange(up)
    assert type(caught.value) is UpstreamError and caught.value.status == 502
    # No body to read it from: the log still names TikTok's request, by its header.
    assert f"log_id={LOG_ID}" in caught.value.log_detail and LOG_ID not in caught.value.description


@pytest.mark.parametrize(("header", "expected"), [("42", 42), ("Wed, 21 Oct 2026 07:28:00 GMT", 5),
                                                   ("1.5", 5), ("-1", 5), (None, 5)])
async def test_429_honours_numeric_retry_after(up: Upstream, header: str | None, expected: int) -> None:
    up.reply(429, {"error": "rate_limit_exceeded"}, headers={"Retry-After": header} if header else None)
    with pytest.raises(UpstreamUnavailable) as caught:
        await refresh(up)
    assert caught.value.retry_after == expected and caught.value.status == 503


@pytest.mark.parametrize("exc_type", [httpx.ReadTimeout, httpx.ConnectTimeout, httpx.ConnectError,
                                      httpx.RemoteProtocolError])
@pytest.mark.parametrize("call", [exchange, refresh, revoke], ids=["exchange", "refresh", "revoke"])
async def test_transport_failures_are_unavailable_and_chained(
        up: Upstream, call: Callable[[Upstream], Any], exc_type: type[httpx.TransportError]) -> None:
    up.fail(exc_type)
    with pytest.raises(UpstreamUnavailable) as caught:
        await call(up)
    assert isinstance(caught.value.__cause__, exc_type)
    assert caught.value.retry_after == 5


async def test_rejection_descriptions_differ_for_code_and_refresh(up: Upstream) -> None:
    up.reply(200, oauth_error("invalid_grant"))
    with pytest.raises(UpstreamRejected) as on_code:
        await exchange(up)
    with pytest.raises(UpstreamRejected) as on_refresh:
        await refresh(up)
    assert on_code.value.description != on_refresh.value.description
    assert "sign in again" in on_refresh.value.description.lower()


# -- revoke --


@pytest.mark.parametrize("content", [b"", b"{}", b"  \n", b'{"log_id": "x"}'])
async def test_revoke_success_with_empty_body_or_empty_object(up: Upstream, content: bytes) -> None:
    up.reply(200, content=content)
    assert await revoke(up) is None
    request = up.requests[-1]
    assert request.method == "POST" and str(request.url) == "https://api.test/v2/oauth/revoke/"
    assert "authorization" not in request.headers
    assert up.form() == {"client_key": KEY, "client_secret": SECRET, "token": ACCESS}


@pytest.mark.parametrize(("status", "content", "expected"), [
    (200, json.dumps(oauth_error("invalid_grant")).encode(), UpstreamRejected),
    (200, json.dumps(oauth_error("invalid_client")).encode(), UpstreamError),
    (401, b"", UpstreamError),
    (400, b"{}", UpstreamError),
    (200, b"<html>", UpstreamError),
    (200, b"[]", UpstreamError),
    (502, b"", UpstreamUnavailable),
    (429, b"{}", UpstreamUnavailable),
])
async def test_revoke_failures(up: Upstream, status: int, content: bytes, expected: type[BrokerError]) -> None:
    up.reply(status, content=content)
    with pytest.raises(BrokerError) as caught:
        await revoke(up)
    assert type(caught.value) is expected


# -- logs: log_id yes, credentials never --


# What each call sends that must stay secret; TikTok's error text may echo any of it back.
SENT = {exchange: (SECRET, CODE, VERIFIER), refresh: (SECRET, REFRESH), revoke: (SECRET, ACCESS)}


def echoing(values: tuple[str, ...]) -> dict[str, Any]:
    return {"error": "invalid_request", "log_id": LOG_ID, "error_description": f"bad: {' '.join(values)}"}


@pytest.mark.parametrize("make_body", [
    lambda sent: oauth_error("invalid_grant"),
    echoing,
    lambda sent: {"error": {"code": sent[-1]}, "log_id": LOG_ID},
    lambda sent: {**GOOD, "expires_in": "soon", "log_id": LOG_ID},  # a valid token inside a broken body
    lambda sent: {**GOOD, "error": "server_error", "log_id": LOG_ID},
], ids=["invalid_grant", "echoed description", "malformed error", "wrong type", "error with tokens"])
async def test_logs_carry_log_id_but_never_credentials(
        up: Upstream, caplog: pytest.LogCaptureFixture,
        make_body: Callable[[tuple[str, ...]], dict[str, Any]]) -> None:
    caplog.set_level(logging.DEBUG)
    calls = [call for call in SENT if call is not revoke or "error" in make_body(SENT[call])]
    for call in calls:
        up.reply(200, make_body(SENT[call]))
        with pytest.raises(UpstreamError) as caught:
            await call(up)
        for value in SENSITIVE:
            assert value not in caught.value.log_detail and value not in caught.value.description
    records = [r for r in caplog.records if r.name == "broker.providers.tiktok"]
    assert len(records) == len(calls) and all(r.levelno == logging.WARNING for r in records)
    assert all(LOG_ID in r.getMessage() for r in records)
    for value in SENSITIVE:
        assert value not in caplog.text


async def test_transport_failure_logs_without_credentials(up: Upstream,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    up.fail(httpx.ConnectError)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(UpstreamUnavailable):
        await exchange(up)
    assert any(r.name == "broker.providers.tiktok" and "ConnectError" in r.getMessage()
               for r in caplog.records)
    for value in SENSITIVE:
        assert value not in caplog.text
