"""openapi.yaml enforced against a live broker by schemathesis.

The broker and the TikTok emulator run as real uvicorn servers on loopback over a real Redis. Schemathesis
generates requests for every operation: valid ones and invalid ones (wrong types, missing or extra fields,
other methods and media types). Each case is sent as generated (random or missing credentials) or, picked
from its content, with one kind of real credential: the session cookie of a person who signed in through
the emulator, that session's bearer JWT, or a registered confidential client. With real credentials the
fields that name a token, a code, a form token, a TikTok path or a webhook signature get real values too,
so generation reaches past the 401s. No answer may be a 5xx, and every answer must be documented: status
code, media type, body schema and headers.

Three more runs hold the spec to what generation cannot reach: the steps of real sign-ins (TikTok's redirect
back, a cancelled consent, the OpenID flow through TikTok), a broker whose Redis is unreachable, and a broker
with tiny rate limits behind a trusted gateway (each limited endpoint's 429, the gateway check's redirect mode).

Hypothesis runs derandomized with a handful of examples per operation: the run is bounded and repeatable.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
import zlib
from collections.abc import Iterator
from ipaddress import ip_network
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import h11
import httpx
import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, reject, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from broker.config import RateLimit, Secret, Settings
from broker.store.embedded import EmbeddedRedis, free_port
from tests.conftest import vault_key
from tests.e2e.conftest import Stack, live_stack
from tests.e2e.test_rate_limits import API_ENDPOINTS, BROWSER_ENDPOINTS, call
from tests.support import credentials
from tests.support.browser import Browser
from tests.support.credentials import Person, basic, sign_in
from tests.support.keys import write_test_keys

# uvicorn's h11 refuses a request whose line and headers pass this many bytes (h11's max_incomplete_event_size).
H11_MAX_HEAD = 16 * 1024
SPEC = Path(__file__).resolve().parents[2] / "openapi.yaml"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, unsupported_method]
# How a generated case is sent: as generated, or with one kind of real credential.
IDENTITIES = ("as-generated", "cookie", "bearer", "client")
# Operations that end what they are given (a session, a user): each case gets a person of its own.
DESTRUCTIVE = {"POST /logout", "DELETE /account", "POST /account/delete", "POST /account/sessions/end"}
# The TikTok path each proxied method is sent to once credentials are real (PUT and the others: TikTok's 405).
TIKTOK_PATHS = {"GET": "v2/user/info/", "POST": "v2/video/list/"}
SESSION = "broker_session"  # the session cookie's name on a loopback http issuer
# Every case comes from 127.0.0.1 and many sign in: the limits stay on (their path is exercised) but so high
# (1000 a second per endpoint) that no generated case is refused for the rate of the run.
LOAD = RateLimit(60_000, 60, 60_000)


def loopback_spec() -> dict[str, Any]:
    """The spec as a loopback http deployment serves it: its cookies carry no __Host- prefix."""
    spec: dict[str, Any] = yaml.safe_load(SPEC.read_text())

    def unprefix(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("in") == "cookie" and isinstance(node.get("name"), str):
                node["name"] = node["name"].removeprefix("__Host-")
            for value in node.values():
                unprefix(value)
        elif isinstance(node, list):
            for value in node:
                unprefix(value)

    unprefix(spec)
    return spec


schema = schemathesis.openapi.from_dict(loopback_spec())
bounded = settings(max_examples=12, derandomize=True, deadline=None, database=None,
                   suppress_health_check=list(HealthCheck))


def stack_settings(home: Path, redis_url: str) -> Settings:
    write_test_keys(home / "keys")
    return Settings(redis_url=Secret(redis_url), redis_prefix="spec:", data_dir=home / "data",
                    keys_dir=home / "keys", vault_keys=(vault_key(),), tiktok_client_key="emulator-client-key",
                    tiktok_client_secret=Secret("emulator-client-secret"), tiktok_timeout=3.0,
                    allowed_return_urls=("https://app.example.com",),
                    clients_file=credentials.write_clients_file(home / "clients.yaml"),
                    rate_limit_login=LOAD, rate_limit_oauth=LOAD, rate_limit_webhook=LOAD, rate_limit_client=LOAD)


def running(settings_: Settings) -> Iterator[Stack]:
    with live_stack(settings_) as stack:
        yield stack


@pytest.fixture(scope="module")
def live(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from running(stack_settings(tmp_path_factory.mktemp("live"), redis_server.url))


@pytest.fixture(scope="module")
def person(live: Stack) -> Iterator[Person]:
    someone = sign_in(live.broker.url, SESSION)
    yield someone
    someone.close()


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A broker whose Redis does not answer (nothing listens on its port)."""
    yield from running(stack_settings(tmp_path_factory.mktemp("outage"), f"redis://127.0.0.1:{free_port()}/0"))


@pytest.fixture(scope="module")
def strict(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One request per endpoint and address a minute, and 127.0.0.1 a trusted gateway."""
    one = RateLimit(1, 60, 1)
    base = stack_settings(tmp_path_factory.mktemp("strict"), redis_server.url)
    yield from running(base.with_overrides(redis_prefix="strict:", rate_limit_login=one, rate_limit_oauth=one,
                                           rate_limit_webhook=one, trusted_proxies=(ip_network("127.0.0.1/32"),)))


def identity_of(case: Any) -> str:
    """Derived from the case's content, so that Hypothesis replaying a case replays its identity too."""
    content = repr((case.method, case.path_parameters, case.query, case.headers, case.cookies, case.body))
    return IDENTITIES[zlib.crc32(content.encode()) % len(IDENTITIES)]


def schemes_of(case: Any) -> set[str]:
    return {name for requirement in case.operation.definition.raw.get("security", []) for name in requirement}


def with_real_values(case: Any, identity: str, person: Person) -> dict[str, str]:
    """Put real credentials (and real tokens, codes, paths) on the case; answer extra headers to send."""
    label, body, issuer = case.operation.label, case.body if isinstance(case.body, dict) else None, person.issuer
    headers: dict[str, str] = {}
    if identity == "cookie" and "sessionCookie" in schemes_of(case):
        case.cookies = {**(case.cookies or {}), SESSION: person.cookie}
        if case.headers:
            case.headers.pop("Authorization", None)
        headers["Origin"] = issuer  # a form on the broker's own pages
        if body is not None and label == "POST /account/delete":
            body.update(person.delete_form())
        if body is not None and label == "POST /account/sessions/end":
            body.update(person.end_session_form())
        if label == "GET /authorize" and case.query is not None:
            case.query.update(client_id=credentials.SPA_ID, redirect_uri=credentials.SPA_CALLBACK)
    elif identity == "bearer" and "bearerJwt" in schemes_of(case):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {person.access_token()}"}
    elif identity == "client" and "clientBasic" in schemes_of(case):
        case.headers = {**(case.headers or {}), "Authorization": basic(credentials.SERVICE_ID,
                                                                     credentials.SERVICE_SECRET)}
        if label.endswith("/tiktok/{path}"):
            case.headers["X-Broker-Subject"] = person.sub
    if label.endswith("/tiktok/{path}") and case.path_parameters is not None:
        case.path_parameters["path"] = TIKTOK_PATHS.get(case.method, "v2/user/info/")
    if body is not None and label in ("POST /oauth/revoke", "POST /oauth/introspect") and "token" in body:
        body["token"] = person.token_pair()["refresh_token" if len(str(body["token"])) % 2 else "access_token"]
    if body is not None and label == "POST /oauth/token":
        if body.get("grant_type") == "refresh_token":
            body["refresh_token"] = person.token_pair()["refresh_token"]
        elif body.get("grant_type") == "authorization_code":
            body.update(person.authorization_code())
            body.pop("client_secret", None)
    if body is not None and label == "POST /webhooks/tiktok" and identity == "client":
        body.update(client_key="emulator-client-key", content='{"reason": 1}')
    return headers


def signed(prepared: requests.PreparedRequest) -> None:
    """TikTok's webhook signature over the exact bytes sent, made with the emulator's client secret."""
    raw = prepared.body or b""
    payload = raw.encode() if isinstance(raw, str) else raw
    stamp = str(int(time.time()))
    digest = hmac.new(b"emulator-client-secret", stamp.encode() + b"." + payload, hashlib.sha256).hexdigest()
    prepared.headers["TikTok-Signature"] = f"t={stamp},s={digest}"


def valid_http(prepared: requests.PreparedRequest) -> bool:
    """Whether uvicorn would hand the request to the broker at all: well-formed HTTP/1.1 (h11, its parser, would
    build it) with a request line and headers under h11's 16 KiB limit. Generated values may hold bytes no HTTP
    message may carry, or percent-encode into a URL of hundreds of kilobytes: uvicorn answers those with a 400
    and closes the connection before the broker sees them, which on a busy machine can reach the client as a
    reset."""
    target = urlsplit(prepared.url or "")
    head = len(prepared.url or "") + sum(len(name) + len(str(value)) + 4 for name, value in prepared.headers.items())
    if head > H11_MAX_HEAD:
        return False
    try:
        h11.Request(method=prepared.method or "GET",
                    target=(target.path or "/") + (f"?{target.query}" if target.query else ""),
                    headers=[("Host", target.netloc), *((name, value) for name, value in prepared.headers.items())])
    except (h11.LocalProtocolError, UnicodeEncodeError):
        return False
    return True


def send(case: Any, base_url: str, headers: dict[str, str], *, sign: bool = False) -> requests.Response:
    kwargs = case.as_transport_kwargs(base_url=base_url, headers=headers)
    request = requests.Request(**{k: v for k, v in kwargs.items() if k in (
        "method", "url", "headers", "cookies", "params", "data", "json", "files")})
    with requests.Session() as http:  # a fresh cookie jar: a case carries its own cookies
        prepared = http.prepare_request(request)
        if sign:
            signed(prepared)
        if not valid_http(prepared):
            reject()  # not an HTTP request: nothing of the broker's to check
        return http.send(prepared, allow_redirects=False, timeout=15)


CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def refused_before_the_app(response: requests.Response) -> bool:
    """The HTTP server's own 400 for a header value with a control character (RFC 9110 section 5.5: httptools
    refuses such a request before any application sees it, so no broker header is on the answer)."""
    sent = response.request.headers.values()
    if not any(CONTROL.search(value if isinstance(value, str) else value.decode("latin-1")) for value in sent):
        return False
    assert response.status_code == 400 and response.text == "Invalid HTTP request received.", response.text
    assert "x-request-id" not in response.headers
    return True


@schema.parametrize()
@bounded
def test_every_answer_is_documented_and_none_is_a_server_error(case: Any, live: Stack, person: Person) -> None:
    identity = identity_of(case)
    label = case.operation.label
    someone = person
    if identity in ("cookie", "bearer") and label in DESTRUCTIVE:
        someone = sign_in(live.broker.url, SESSION)
    try:
        extra = with_real_values(case, identity, someone) if identity != "as-generated" else {}
        response = send(case, live.broker.url, extra, sign=identity == "client" and label == "POST /webhooks/tiktok")
        if not refused_before_the_app(response):
            case.validate_response(response, checks=CHECKS)
    finally:
        if someone is not person:
            someone.close()


@schema.parametrize()
@settings(bounded, max_examples=3)
def test_with_redis_unreachable_every_answer_is_still_documented(case: Any, outage: Stack) -> None:
    response = send(case, outage.broker.url, {})
    assert response.status_code < 500 or response.status_code == 503, response.text  # fail closed, documented
    if not refused_before_the_app(response):
        case.validate_response(response, checks=[check for check in CHECKS if check is not not_a_server_error])


def validate_flow(responses: list[httpx.Response], issuer: str) -> list[str]:
    """Check every answer the broker gave during a browser flow; answer the steps seen, as 'METHOD /path status'."""
    seen = []
    for response in responses:
        url = urlsplit(str(response.request.url))
        if f"{url.scheme}://{url.netloc}" != issuer:
            continue  # the emulator's pages
        response.request.read()  # a followed redirect's request: schemathesis reads its body
        response.request.read()  # a followed redirect's request: schemathesis reads its body
        operation = schema.find_operation_by_path(response.request.method, url.path)
        assert operation is not None, url.path
        operation.Case(method=response.request.method).validate_response(response, checks=CHECKS)
        seen.append(f"{response.request.method} {url.path} {response.status_code}")
    return seen


def test_the_steps_of_real_sign_ins_are_documented(live: Stack) -> None:
    issuer = live.broker.url
    newcomer = sign_in(issuer, SESSION)
    code = newcomer.authorization_code()
    steps = validate_flow(newcomer.browser.history, issuer)
    assert steps[:3] == ["GET /login 302", "GET /callback 303", "GET / 200"], steps
    assert "GET /authorize 302" in steps and code["code"]

    cancelled = Browser()
    try:
        consent = cancelled.get(f"{issuer}/login?prompt=login")
        refused = cancelled.consent(consent, action="deny")
        assert refused.status_code == 403
        assert validate_flow(cancelled.history, issuer) == ["GET /login 302", "GET /callback 403"]
    finally:
        cancelled.close()

    # The OpenID flow of a browser without a session: /authorize, TikTok, /callback, /authorize/resume.
    fresh = Browser()
    try:
        query = newcomer.authorization_request(prompt="login")  # TikTok's consent page, whoever consented last
        consent = fresh.get(f"{issuer}/authorize?{query}")
        back = fresh.consent(consent, display_name="Spec Newcomer", scopes=credentials.SCOPES)
        assert back.is_redirect and back.headers["location"].startswith(credentials.SPA_CALLBACK)
        steps = validate_flow(fresh.history, issuer)
        assert steps == ["GET /authorize 302", "GET /callback 303", "GET /authorize/resume 302"], steps
    finally:
        fresh.close()
        newcomer.close()


def test_rate_limited_and_redirected_answers_are_documented(strict: Stack) -> None:
    issuer = strict.broker.url
    answers = []
    for endpoint in BROWSER_ENDPOINTS + API_ENDPOINTS:
        call(strict, endpoint)
        refused = call(strict, endpoint)
        assert refused.status_code == 429, (endpoint, refused.text)
        answers.append(refused)
    page, original = {"Accept": "text/html"}, "https%3A%2F%2Fapp.example.com%2Finbox%3Fx%3D1"
    traefik = httpx.get(f"{issuer}/auth/verify", params={"redirect": "1"}, headers={
        **page, "X-Forwarded-Method": "GET", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.example.com",
        "X-Forwarded-Uri": "/inbox?x=1"})
    envoy = {**page, "X-Broker-Redirect": "1", "X-Forwarded-Proto": "https", "Host": "app.example.com"}
    navigation = httpx.get(f"{issuer}/auth/verify/inbox", params={"x": "1"}, headers=envoy)
    form_post = httpx.post(f"{issuer}/auth/verify/inbox", params={"x": "1"}, headers=envoy)
    assert [traefik.status_code, navigation.status_code, form_post.status_code] == [302, 302, 401]
    for answer in (traefik, navigation, form_post):
        assert answer.headers["location"] == f"{issuer}/login?return_to={original}"
    assert len(validate_flow([*answers, traefik], issuer)) == len(answers) + 1
    for answer in (navigation, form_post):
        operation = schema.find_operation_by_path(answer.request.method, answer.request.url.path)
        assert operation is not None and operation.path == "/auth/verify/{path}"
        operation.Case(method=answer.request.method, path_parameters={"path": "inbox"}).validate_response(
            answer, checks=CHECKS)
