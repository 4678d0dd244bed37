"""Traefik ForwardAuth and Envoy ext_authz (HTTP) against the live broker, as each gateway calls it.

Neither gateway's binary is available here, so each is stood in for by its contract, driven by the shipped
configuration file (deploy/traefik/broker.yml, deploy/envoy/envoy.yaml): the exact request it sends the broker
(method, path, headers it copies or adds) and what it does with the answer (which statuses allow, which headers
reach the upstream, what reaches the visitor). A config that names a header the broker never sets, or a path the
broker does not serve, fails here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import ip_network
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import jwt
import pytest
import yaml

from broker.config import Secret, Settings
from broker.store.embedded import free_port
from tests.e2e.conftest import ALICE, Stack, live_stack, start_stack
from tests.support.browser import Browser

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
APP = "https://app.example.com"
VISITOR_IP = "198.51.100.23"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
ALLOWED_HEADERS = {"authorization", "x-auth-request-user", "x-auth-request-open-id"}


@dataclass
class Outcome:
    """What the gateway does: pass the request upstream with these headers, or answer the visitor."""

    allowed: bool
    upstream: dict[str, str]
    status: int
    headers: dict[str, str]
    body: bytes


# -- Traefik ------------------------------------------------------------------------------------------------

def traefik_middleware() -> dict[str, Any]:
    config = yaml.safe_load((DEPLOY / "traefik" / "broker.yml").read_text())
    forward: dict[str, Any] = config["http"]["middlewares"]["tiktok-broker"]["forwardAuth"]
    return forward


def traefik(stack: Stack, method: str, url: str, headers: dict[str, str]) -> Outcome:
    """Traefik's ForwardAuth: GET the address with the allowed visitor headers and its X-Forwarded-* set."""
    config = traefik_middleware()
    address = urlsplit(config["address"])
    target = f"{stack.broker.url}{address.path}" + (f"?{address.query}" if address.query else "")
    wanted = {name.lower() for name in config["authRequestHeaders"]}
    parts = urlsplit(url)
    sent = {name: value for name, value in headers.items() if name.lower() in wanted}
    sent.update({"X-Forwarded-For": VISITOR_IP, "X-Forwarded-Method": method, "X-Forwarded-Proto": parts.scheme,
                 "X-Forwarded-Host": parts.netloc,
                 "X-Forwarded-Uri": parts.path + (f"?{parts.query}" if parts.query else "")})
    answer = httpx.get(target, headers=sent, timeout=10)
    if 200 <= answer.status_code < 300:
        upstream = {name: value for name, value in headers.items()
                    if name.lower() not in {h.lower() for h in config["authResponseHeaders"]}}
        for name in config["authResponseHeaders"]:
            if name in answer.headers:
                upstream[name] = answer.headers[name]
        return Outcome(True, upstream, answer.status_code, dict(answer.headers), answer.content)
    return Outcome(False, {}, answer.status_code, dict(answer.headers), answer.content)


# -- Envoy --------------------------------------------------------------------------------------------------

def envoy_filter() -> dict[str, Any]:
    config = yaml.safe_load((DEPLOY / "envoy" / "envoy.yaml").read_text())
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    found: dict[str, Any] = next(f["typed_config"] for f in manager["http_filters"]
                                 if f["name"] == "envoy.filters.http.ext_authz")
    return found


def _exact(matchers: dict[str, Any]) -> set[str]:
    return {pattern["exact"] for pattern in matchers["patterns"]}


def envoy(stack: Stack, method: str, url: str, headers: dict[str, str], *,
          config: dict[str, Any] | None = None) -> Outcome:
    """Envoy's HTTP ext_authz: the original method, path_prefix + original path and query, the original Host."""
    config = config or envoy_filter()
    service = config["http_service"]
    parts = urlsplit(url)
    forwarded = {"host", "authorization"} | _exact(config["allowed_headers"])
    sent = {name: value for name, value in headers.items() if name.lower() in forwarded}
    sent.update({"Host": parts.netloc, "Content-Length": "0"})
    sent.update({h["key"]: h["value"] for h in service.get("authorization_request", {}).get("headers_to_add", [])})
    path = service["path_prefix"] + (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    answer = httpx.request(method, f"{stack.broker.url}{path}", headers=sent, timeout=10)
    response = service["authorization_response"]
    if answer.status_code == 200:
        upstream = dict(headers)
        for name in _exact(response["allowed_upstream_headers"]):
            if name in answer.headers:
                upstream[name] = answer.headers[name]
        return Outcome(True, upstream, 200, dict(answer.headers), answer.content)
    if answer.status_code >= 500:  # an error, not a denial: Envoy answers status_on_error itself
        code = {"ServiceUnavailable": 503, "Forbidden": 403}[config.get("status_on_error", {}).get("code",
                                                                                                   "Forbidden")]
        return Outcome(False, {}, code, {}, b"")
    to_client = _exact(response["allowed_client_headers"]) | {"location", "www-authenticate", "content-length"}
    return Outcome(False, {}, answer.status_code,
                   {name: value for name, value in answer.headers.items() if name in to_client}, answer.content)


# -- the stack ----------------------------------------------------------------------------------------------

@pytest.fixture
def gateway_stack(base_settings: Settings) -> Iterator[Stack]:
    with live_stack(base_settings.with_overrides(trusted_proxies=(ip_network("127.0.0.1/32"),),
                                                 allowed_return_urls=(APP,))) as stack:
        yield stack


def signed_in_cookie(stack: Stack, browser: Browser) -> str:
    consent = browser.get(f"{stack.broker.url}/login")
    assert browser.consent(consent, user=ALICE).status_code == 200
    return f"broker_session={browser.client.cookies['broker_session']}"


def check_jwt(stack: Stack, upstream: dict[str, str]) -> dict[str, Any]:
    token = upstream["authorization"].removeprefix("Bearer ")
    key = jwt.PyJWKClient(f"{stack.broker.url}/.well-known/jwks.json").get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(token, key.key, algorithms=["ES256"],
                                        audience=stack.settings.token_audience, issuer=stack.settings.issuer)
    assert claims["sub"] == upstream["x-auth-request-user"] and claims["tiktok_open_id"] == ALICE
    assert upstream["x-auth-request-open-id"] == ALICE
    return claims


def login_url(stack: Stack, original: str | None) -> str:
    return f"{stack.broker.url}/login" + (f"?return_to={quote(original, safe='')}" if original else "")


# -- the shipped files name what the broker really does -----------------------------------------------------

def test_the_shipped_configurations_name_the_broker_path_and_the_headers_it_sets(
        gateway_stack: Stack, browser: Browser) -> None:
    traefik_config, envoy_config = traefik_middleware(), envoy_filter()
    cookie = signed_in_cookie(gateway_stack, browser)
    answer = httpx.get(f"{gateway_stack.broker.url}/auth/verify", headers={"Cookie": cookie})
    assert answer.status_code == 200
    set_by_broker = {name for name in answer.headers if name == "authorization" or name.startswith("x-auth-")}
    assert set_by_broker == ALLOWED_HEADERS
    assert {name.lower() for name in traefik_config["authResponseHeaders"]} == set_by_broker
    assert _exact(envoy_config["http_service"]["authorization_response"]["allowed_upstream_headers"]) == \
        set_by_broker
    assert urlsplit(traefik_config["address"]).path == "/auth/verify"
    assert urlsplit(traefik_config["address"]).query == "redirect=1"
    assert {"Cookie", "Authorization", "Accept"} <= set(traefik_config["authRequestHeaders"])
    assert envoy_config["http_service"]["path_prefix"] == "/auth/verify"
    assert {"cookie", "accept", "x-forwarded-proto"} <= _exact(envoy_config["allowed_headers"])
    assert envoy_config["status_on_error"] == {"code": "ServiceUnavailable"}
    assert envoy_config["failure_mode_allow"] is False


# -- Traefik ------------------------------------------------------------------------------------------------

def test_traefik_sends_an_anonymous_browser_to_login_and_it_comes_back_signed_in(
        gateway_stack: Stack, browser: Browser) -> None:
    original = f"{APP}/reports/weekly?team=a&page=2"
    denied = traefik(gateway_stack, "GET", original, {"Accept": BROWSER_ACCEPT})
    assert not denied.allowed and denied.status == 302
    assert denied.headers["location"] == login_url(gateway_stack, original)
    assert denied.headers["cache-control"] == "no-store"

    # The browser follows it: TikTok's consent, the broker's callback, and back to the page it asked for.
    consent = browser.get(denied.headers["location"])
    back = browser.consent(consent, user=ALICE)
    assert back.status_code == 303 and back.headers["location"] == original
    cookie = f"broker_session={browser.client.cookies['broker_session']}"

    passed = traefik(gateway_stack, "GET", original, {"Accept": BROWSER_ACCEPT, "Cookie": cookie,
                                                      "X-Auth-Request-User": "forged"})
    assert passed.allowed and passed.status == 200
    check_jwt(gateway_stack, {k.lower(): v for k, v in passed.upstream.items()})


def test_traefik_answers_api_calls_and_non_navigations_with_the_401(gateway_stack: Stack) -> None:
    original = f"{APP}/api/orders?x=1"
    for method, accept in (("GET", "application/json"), ("GET", "*/*"), ("POST", BROWSER_ACCEPT)):
        denied = traefik(gateway_stack, method, original, {"Accept": accept})
        assert denied.status == 401, (method, accept)
        assert httpx.Response(401, content=denied.body).json()["error"] == "invalid_token"
        assert denied.headers["www-authenticate"].startswith("Bearer")
        assert denied.headers["location"] == login_url(gateway_stack, original)


def test_traefik_forwarded_host_off_the_allowlist_is_no_open_redirect(gateway_stack: Stack) -> None:
    for original in ("https://evil.example/steal", "http://app.example.com/plain-http",
                     "https://app.example.com.evil.example/x"):
        denied = traefik(gateway_stack, "GET", original, {"Accept": BROWSER_ACCEPT})
        assert denied.status == 302 and denied.headers["location"] == login_url(gateway_stack, None), original


def test_traefik_signed_in_with_a_bearer_jwt_reaches_the_app(gateway_stack: Stack, browser: Browser) -> None:
    cookie = signed_in_cookie(gateway_stack, browser)
    token = traefik(gateway_stack, "GET", f"{APP}/", {"Cookie": cookie}).upstream["Authorization"]
    passed = traefik(gateway_stack, "DELETE", f"{APP}/api/orders/7", {"Authorization": token})
    assert passed.allowed and passed.upstream["Authorization"] == token


def test_traefik_passes_a_store_outage_to_the_visitor_as_503(base_settings: Settings) -> None:
    dead = Secret(f"redis://127.0.0.1:{free_port()}/0")
    stack, servers = start_stack(base_settings.with_overrides(redis_url=dead,
                                                              trusted_proxies=(ip_network("127.0.0.1/32"),)))
    try:
        outage = traefik(stack, "GET", f"{APP}/", {"Accept": BROWSER_ACCEPT,
                                                   "Cookie": "broker_session=" + "A" * 22 + "." + "B" * 43})
        assert outage.status == 503 and int(outage.headers["retry-after"]) >= 1  # not a logout, not a login
    finally:
        for server in servers:
            server.stop()


def test_forwarded_headers_from_an_untrusted_gateway_are_ignored(base_settings: Settings) -> None:
    stack, servers = start_stack(base_settings.with_overrides(allowed_return_urls=(APP,)))  # trusts nobody
    try:
        denied = traefik(stack, "GET", f"{APP}/reports", {"Accept": BROWSER_ACCEPT})
        assert denied.status == 302 and denied.headers["location"] == login_url(stack, None)
        denied = envoy(stack, "GET", f"{APP}/reports", {"Accept": BROWSER_ACCEPT, "x-forwarded-proto": "https"})
        assert denied.status == 302 and denied.headers["location"] == login_url(stack, None)
    finally:
        for server in servers:
            server.stop()


# -- Envoy --------------------------------------------------------------------------------------------------

def test_envoy_allows_every_method_with_exactly_200_and_the_upstream_headers(
        gateway_stack: Stack, browser: Browser) -> None:
    cookie = signed_in_cookie(gateway_stack, browser)
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        passed = envoy(gateway_stack, method, f"{APP}/api/orders?x=1",
                       {"cookie": cookie, "x-forwarded-proto": "https", "x-auth-request-user": "forged"})
        assert passed.allowed and passed.status == 200, method
        check_jwt(gateway_stack, passed.upstream)


def test_envoy_denies_with_the_original_url_as_return_to(gateway_stack: Stack, browser: Browser) -> None:
    original = f"{APP}/reports/w%C3%B6chentlich?team=a&redirect=0"
    headers = {"accept": BROWSER_ACCEPT, "x-forwarded-proto": "https"}
    denied = envoy(gateway_stack, "GET", original, headers)
    assert denied.status == 302  # x-broker-redirect from headers_to_add; the app's own query is not ours
    assert denied.headers["location"] == login_url(gateway_stack, original)
    back = browser.consent(browser.get(denied.headers["location"]), user=ALICE)
    assert back.status_code == 303 and back.headers["location"] == original

    api = envoy(gateway_stack, "POST", f"{APP}/api/orders", {"accept": "application/json",
                                                             "x-forwarded-proto": "https"})
    assert api.status == 401 and api.headers["location"] == login_url(gateway_stack, f"{APP}/api/orders")
    assert httpx.Response(401, content=api.body).json()["error"] == "invalid_token"


def test_envoy_without_the_redirect_header_keeps_the_401_whatever_the_app_query_says(gateway_stack: Stack) -> None:
    config = envoy_filter()
    del config["http_service"]["authorization_request"]
    denied = envoy(gateway_stack, "GET", f"{APP}/?redirect=1", {"accept": BROWSER_ACCEPT,
                                                              "x-forwarded-proto": "https"}, config=config)
    assert denied.status == 401 and denied.headers["location"] == login_url(gateway_stack, f"{APP}/?redirect=1")


def test_envoy_turns_a_store_outage_into_its_status_on_error(base_settings: Settings) -> None:
    dead = Secret(f"redis://127.0.0.1:{free_port()}/0")
    stack, servers = start_stack(base_settings.with_overrides(redis_url=dead,
                                                              trusted_proxies=(ip_network("127.0.0.1/32"),)))
    try:
        cookie = "broker_session=" + "A" * 22 + "." + "B" * 43
        direct = httpx.get(f"{stack.broker.url}/auth/verify/x", headers={"Cookie": cookie})
        assert direct.status_code == 503  # what the broker says ...
        assert envoy(stack, "GET", f"{APP}/x", {"cookie": cookie}).status == 503  # ... and what Envoy makes of it
    finally:
        for server in servers:
            server.stop()
