"""Fuzzing every parser of outside input: whatever a client sends, the broker answers in its own shape, never 5xx.

Two layers. The parsers alone, with many examples each (return URLs, forwarding headers, the webhook's signature
header and body, Basic and bearer credentials). Then the whole application in process, one request per example,
sent as raw ASGI bytes no HTTP client would produce (a raw "#" in a query, a Host of "[", any header): browser
pages with odd return URLs, queries and cookies; the gateway check behind a trusted proxy with odd forwarding
headers; the OAuth forms; the webhook, signed correctly around an odd body; the TikTok API proxy's path and query.

Hypothesis runs derandomized with a fixed number of examples per test, so the run is bounded (a few seconds) and
repeatable; FUZZ_EXAMPLES=<n> runs more of them for a longer hunt.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import ip_network
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from broker.clock import SystemClock
from broker.config import Secret, Settings
from broker.errors import InvalidClient, InvalidRequest, InvalidReturnUrl, InvalidToken
from broker.flows.return_urls import ReturnUrlPolicy
from broker.flows.tiktok_webhook import InvalidSignature, _parse, parse_signature_header
from broker.signing.keyring import create_key
from broker.store.embedded import EmbeddedRedis
from broker.web.client_addr import client_address, parse_address
from broker.web.credentials import basic_credentials
from broker.web.services import Services
from tests.conftest import vault_key
from tests.support import credentials
from tests.support.asgi import raw_request
from tests.support.inprocess import InProcess, in_process

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
PARSER_EXAMPLES = EXAMPLES * 4
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
FUZZ_PARSERS = settings(FUZZ, max_examples=PARSER_EXAMPLES)

ISSUER = "http://127.0.0.1:8080"
WEBHOOK_SECRET = "emulator-client-secret"
LOOPBACK = (ip_network("127.0.0.1/32"),)

# Pieces that parsers trip over, strung together at random, beside plain random text.
URL_PIECES = ["http://", "https://", "HTTP://", "//", "/", "\\", "[", "]", "::1", "[::1]", "@", ":", ":8080",
              ":99999", "%", "%2e", "%5c", "..", ".", "#", "?", "&", "=", ";", "app.example.com",
              "127.0.0.1", "evil.example", "\t", "\n", " ", "é", "\u2028", "\x00", "a", "0", "xn--", "*"]
HEADER_CHARS = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")
header_text = st.text(HEADER_CHARS, max_size=80)
url_like = st.one_of(st.text(max_size=60), st.lists(st.sampled_from(URL_PIECES), max_size=12).map("".join))
header_url = url_like.map(lambda text: text.encode("latin-1", "replace").decode("latin-1").replace("\n", "")
                          .replace("\r", "")) | header_text
raw_bytes = st.one_of(st.binary(max_size=120),
                      st.lists(st.sampled_from(URL_PIECES), max_size=12).map(lambda p: "".join(p).encode()))


# -- the parsers alone --

@FUZZ_PARSERS
@given(raw=st.one_of(st.none(), url_like))
def test_a_return_url_is_refused_or_stays_on_the_allowlist(raw: str | None) -> None:
    policy = ReturnUrlPolicy(ISSUER, ("https://app.example.com/app",))
    try:
        target = policy.check(raw)
    except InvalidReturnUrl:
        return
    parts = urlsplit(target)
    assert (parts.scheme, parts.netloc) in (("http", "127.0.0.1:8080"), ("https", "app.example.com")), target
    if parts.netloc == "app.example.com":
        assert parts.path == "/app" or parts.path.startswith("/app/"), target


@FUZZ_PARSERS
@given(peer=header_text, hops=st.lists(header_text, max_size=3))
def test_forwarding_headers_name_some_address(peer: str, hops: list[str]) -> None:
    ip, trusted = client_address(peer, hops, LOOPBACK)
    assert isinstance(ip, str)
    assert trusted == (parse_address(peer) is not None and str(parse_address(peer)) == "127.0.0.1")


@FUZZ_PARSERS
@given(header=st.one_of(st.none(), header_text,
                        st.tuples(st.text(max_size=14), st.text(max_size=70)).map(lambda p: f"t={p[0]},s={p[1]}")))
def test_the_webhook_signature_header_is_parsed_or_refused(header: str | None) -> None:
    try:
        t, s = parse_signature_header(header)
    except InvalidSignature:
        return
    assert t.isascii() and t.isdigit() and int(t) >= 0
    assert len(s) == 64 and int(s, 16) >= 0


@FUZZ_PARSERS
@given(body=st.one_of(st.binary(max_size=200), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10).map(lambda value: repr(value).encode()), st.integers(1, 70_000).map(lambda n: b"[" * n)))
def test_the_webhook_body_is_parsed_or_refused(body: bytes) -> None:
    with contextlib.suppress(InvalidRequest):
        _parse(body)


@FUZZ_PARSERS
@given(header=header_text)
def test_basic_credentials_are_read_or_refused(header: str) -> None:
    request = Request({"type": "http", "headers": [(b"authorization", header.encode("latin-1"))]})
    try:
        found = basic_credentials(request)
    except InvalidClient:
        return
    assert found is None or all(isinstance(part, str) for part in found)


# -- the whole application --

@dataclass
class Live:
    loop: asyncio.AbstractEventLoop
    stack: InProcess
    bearer: str
    cookie: str

    def send(self, method: str, path: str, *, query: bytes = b"", headers: dict[str, str] | None = None,
             body: bytes = b"") -> int:
        status, answer = self.loop.run_until_complete(
            raw_request(self.stack.app, method, path, query=query, headers=headers, body=body))
        assert status < 500, (status, method, path, query, headers, body, answer[:300])
        return status


@pytest.fixture(scope="module")
def live(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    home = tmp_path_factory.mktemp("fuzz")
    create_key(home / "keys", alg="ES256", activate_at=SystemClock().now() - 1, clock=SystemClock(),
               jwks_max_age=300)
    base = Settings(issuer=ISSUER, redis_url=Secret(redis_server.url), redis_prefix="fuzz:", data_dir=home / "data",
                    keys_dir=home / "keys", vault_keys=(vault_key(),), tiktok_client_key="emulator-client-key",
                    tiktok_client_secret=Secret(WEBHOOK_SECRET), tiktok_timeout=3.0,
                    allowed_return_urls=("https://app.example.com",), trusted_proxies=LOOPBACK,
                    clients_file=credentials.write_clients_file(home / "clients.yaml"), rate_limits=False)
    loop = asyncio.new_event_loop()
    running = in_process(base)
    stack = loop.run_until_complete(running.__aenter__())
    try:
        loop.run_until_complete(stack.sign_in(scopes=("user.info.basic", "user.info.profile")))
        check = loop.run_until_complete(stack.broker.get("/auth/verify"))
        assert check.status_code == 200
        cookie = "; ".join(f"{name}={value}" for name, value in stack.broker.cookies.items())
        yield Live(loop, stack, check.headers["authorization"], cookie)
    finally:
        loop.run_until_complete(running.__aexit__(None, None, None))
        loop.close()


def services_of(live: Live) -> Services:
    found: Services = live.stack.app.state.services
    return found


@FUZZ
@given(token=st.one_of(header_text, st.lists(st.sampled_from(["eyJ", "hbGciOiJFUzI1NiJ9", ".", "=", "e30", "-",
                                                              "_", "A"]), max_size=20).map("".join)))
def test_a_bearer_token_is_verified_or_refused(live: Live, token: str) -> None:
    with contextlib.suppress(InvalidToken):
        services_of(live).sessions.verify_bearer(token)


@FUZZ
@given(path=st.sampled_from(["/", "/login", "/callback", "/authorize", "/authorize/resume", "/account",
                             "/account/delete"]),
       query=raw_bytes, host=st.one_of(st.none(), header_url), cookie=st.one_of(st.none(), header_text),
       return_to=st.one_of(st.none(), url_like))
def test_browser_pages(live: Live, path: str, query: bytes, host: str | None, cookie: str | None,
                       return_to: str | None) -> None:
    headers = {"host": host} if host is not None else {}
    if cookie is not None:
        headers["cookie"] = cookie
    if return_to is not None:
        query = b"return_to=" + return_to.encode("utf-8", "replace") + b"&" + query
    live.send("GET", path, query=query, headers=headers)


@FUZZ
@given(headers=st.dictionaries(st.sampled_from(["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
                                                "x-forwarded-uri", "x-forwarded-method", "x-original-url", "host",
                                                "cookie", "authorization", "accept", "x-broker-redirect",
                                                "x-request-id"]), header_url, max_size=6),
       query=raw_bytes, envoy_path=st.one_of(st.none(), url_like), signed_in=st.booleans())
def test_the_gateway_check_behind_a_trusted_proxy(live: Live, headers: dict[str, str], query: bytes,
                                                   envoy_path: str | None, signed_in: bool) -> None:
    if signed_in:
        headers = {**headers, "cookie": live.cookie}
    path = "/auth/verify" if envoy_path is None else "/auth/verify/" + envoy_path.lstrip("/")
    status = live.send("GET", path, query=query, headers=headers)
    assert status in (200, 302, 400, 401, 404)


@FUZZ
@given(endpoint=st.sampled_from(["/oauth/token", "/oauth/revoke", "/oauth/introspect", "/logout",
                                 "/account/sessions/end", "/account/delete"]),
       content_type=st.one_of(st.none(), st.sampled_from(["application/x-www-form-urlencoded",
                                                          "multipart/form-data; boundary=b", "application/json",
                                                          "multipart/form-data"]), header_text),
       body=st.one_of(raw_bytes, st.dictionaries(st.sampled_from(["grant_type", "refresh_token", "token", "code",
                                                                   "client_id", "client_secret", "redirect_uri",
                                                                   "return_to", "everywhere", "sid"]),
                                                 url_like, max_size=4)
                      .map(lambda form: "&".join(f"{k}={v}" for k, v in form.items()).encode("utf-8", "replace"))),
       authorization=st.one_of(st.none(), header_text, st.just("Basic am9iczp4"), st.sampled_from(["bearer"])),
       origin=st.one_of(st.none(), st.just(ISSUER), header_text))
def test_oauth_and_account_forms(live: Live, endpoint: str, content_type: str | None, body: bytes,
                                 authorization: str | None, origin: str | None) -> None:
    # Not the shared session's cookie on /logout: a same-origin logout would end it for the examples after.
    headers = {} if endpoint == "/logout" else {"cookie": live.cookie}
    for name, value in (("content-type", content_type), ("origin", origin)):
        if value is not None:
            headers[name] = value
    if authorization == "bearer":
        headers["authorization"] = live.bearer
    elif authorization is not None:
        headers["authorization"] = authorization
    if endpoint in ("/logout", "/account/delete") and authorization == "bearer":
        return  # a valid bearer logout would end the one session the other examples use
    live.send("POST", endpoint, headers=headers, body=body)


@FUZZ
@given(header=st.one_of(st.none(), header_text), body=raw_bytes | st.integers(1, 60_000).map(lambda n: b"[" * n),
       sign=st.booleans())
def test_the_tiktok_webhook(live: Live, header: str | None, body: bytes, sign: bool) -> None:
    headers = {"content-type": "application/json"}
    if sign:
        t = str(int(time.time()))
        digest = hmac.new(WEBHOOK_SECRET.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
        headers["tiktok-signature"] = f"t={t},s={digest}"
    elif header is not None:
        headers["tiktok-signature"] = header
    live.send("POST", "/webhooks/tiktok", headers=headers, body=body)


@FUZZ
@given(path=st.one_of(st.sampled_from(["/tiktok/v2/user/info/", "/tiktok/v2/video/list/"]),
                      url_like.map(lambda p: "/tiktok/" + p)),
       query=st.one_of(raw_bytes, st.lists(st.sampled_from(["fields=", "open_id", ",", "display_name", "&",
                                                             "fields", "#", "%", "%2C", ";", "=", "username"]),
                                           max_size=10).map(lambda p: "".join(p).encode())),
       authorization=st.one_of(st.just("bearer"), header_text, st.just(credentials.basic("jobs", "wrong"))),
       method=st.sampled_from(["GET", "POST"]))
def test_the_tiktok_api_proxy(live: Live, path: str, query: bytes, authorization: str, method: str) -> None:
    headers = {"authorization": live.bearer if authorization == "bearer" else authorization}
    live.send(method, path, query=query, headers=headers)

