"""deploy/nginx/broker.conf run by a real nginx, in front of a sample app, with the broker as its auth_request."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import ip_network
from pathlib import Path
from urllib.parse import quote

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from broker.config import Settings
from broker.store.embedded import free_port
from tests.e2e.conftest import ALICE, Stack, start_stack
from tests.e2e.test_login import log_in
from tests.support.browser import Browser
from tests.support.servers import ThreadedServer

CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "broker.conf"


def nginx_path() -> str:
    """The nginx binary; in CI its absence is a failure, on a laptop it skips the test."""
    found = os.environ.get("BROKER_TEST_NGINX") or shutil.which("nginx") or \
        next((p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.access(p, os.X_OK)), None)
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("CI must install Debian's nginx (see .ci/run)")
    pytest.skip("no nginx on this machine (apt-get install nginx)")


def render(workdir: Path, *, listen: int, broker: str, app: str) -> Path:
    """The deployed file with loopback addresses, in a minimal nginx.conf that touches nothing outside workdir."""
    text = CONF.read_text()
    for placeholder, value in (("listen 80;", f"listen 127.0.0.1:{listen};"), ("broker:8080", broker),
                               ("app:8000", app), ("app.example.com", "127.0.0.1")):
        assert placeholder in text, f"{CONF} no longer has the placeholder {placeholder!r}"
        text = text.replace(placeholder, value)
    (workdir / "broker.conf").write_text(text)
    temp = {name: workdir / "tmp" / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for directory in temp.values():
        directory.mkdir(parents=True)
    main = workdir / "nginx.conf"
    main.write_text(f"""
worker_processes 1;
{"user root root;" if os.geteuid() == 0 else ""}
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    include {workdir / "broker.conf"};
}}
""")
    return main


@dataclass
class Nginx:
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def run_nginx(workdir: Path, *, broker: str, app: str, port: int | None = None) -> Iterator[Nginx]:
    binary = nginx_path()
    port = port or free_port()
    conf = render(workdir, listen=port, broker=broker, app=app)
    args = [binary, "-e", "stderr", "-p", str(workdir), "-c", str(conf),
            "-g", f"daemon off; pid {workdir / 'nginx.pid'}; error_log stderr;"]
    check = subprocess.run([*args, "-t"], capture_output=True, text=True, timeout=10)
    assert check.returncode == 0, check.stderr
    log = (workdir / "nginx.log").open("w")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert process.poll() is None, (workdir / "nginx.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nginx did not start listening"
                time.sleep(0.05)
        yield Nginx(port)
    finally:
        process.send_signal(signal.SIGQUIT)  # graceful shutdown
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()


def echo_app() -> Starlette:
    """The protected app: answers with the request headers it received."""
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"path": request.url.path, "query": request.url.query, "headers": dict(request.headers)})
    return Starlette(routes=[Route("/{path:path}", echo, methods=["GET", "POST"])])


@pytest.fixture
def app_server() -> Iterator[ThreadedServer]:
    with ThreadedServer(echo_app()) as server:
        yield server


@pytest.fixture
def gated(base_settings: Settings, tmp_path: Path, app_server: ThreadedServer) -> Iterator[tuple[Stack, Nginx]]:
    nginx_path()  # skip (or fail in CI) before starting anything
    port = free_port()
    # nginx calls the broker from 127.0.0.1: trusting it makes its X-Original-URL the login's return_to, which
    # the broker still checks against the allowlist (this site's origin is on it).
    stack, servers = start_stack(base_settings.with_overrides(
        trusted_proxies=(ip_network("127.0.0.1/32"),), allowed_return_urls=(f"http://127.0.0.1:{port}",)))
    try:
        with run_nginx(tmp_path, broker=f"127.0.0.1:{stack.broker.port}",
                       app=f"127.0.0.1:{app_server.port}", port=port) as proxy:
            yield stack, proxy
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, follow_redirects=False) as plain:
        yield plain


def test_an_anonymous_browser_is_sent_to_the_broker_login(gated: tuple[Stack, Nginx], client: httpx.Client) -> None:
    stack, proxy = gated
    original = f"{proxy.url}/reports/weekly?team=a&page=2"
    response = client.get(original)
    assert response.status_code == 302
    assert response.headers["location"] == f"{stack.broker.url}/login?return_to={quote(original, safe='')}"
    assert response.headers["cache-control"] == "no-store"
    # A forged identity does not get through either.
    forged = client.get(f"{proxy.url}/", headers={"X-Auth-Request-User": "someone", "Authorization": "Bearer nope"})
    assert forged.status_code == 302 and forged.headers["location"].startswith(f"{stack.broker.url}/login?")


def test_a_signed_in_browser_reaches_the_app_with_a_broker_jwt_until_logout(
        gated: tuple[Stack, Nginx], browser: Browser, client: httpx.Client) -> None:
    stack, proxy = gated
    assert log_in(stack, browser).status_code == 200
    cookie = {"Cookie": f"broker_session={browser.client.cookies['broker_session']}"}

    response = client.get(f"{proxy.url}/dashboard?x=1", headers={**cookie, "X-Auth-Request-User": "forged"})
    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["path"] == "/dashboard" and seen["query"] == "x=1"
    headers = seen["headers"]
    token = headers["authorization"].removeprefix("Bearer ")
    signing_key = jwt.PyJWKClient(f"{stack.broker.url}/.well-known/jwks.json").get_signing_key_from_jwt(token)
    claims = jwt.decode(token, signing_key.key, algorithms=["ES256"], audience=stack.settings.token_audience,
                        issuer=stack.settings.issuer)
    assert claims["tiktok_open_id"] == ALICE == headers["x-auth-request-open-id"]
    assert claims["sub"] == headers["x-auth-request-user"] != ALICE
    assert headers["host"] == f"127.0.0.1:{proxy.port}"

    # An app's own bearer (the broker JWT) is accepted through nginx too.
    bearer = client.get(f"{proxy.url}/api", headers={"Authorization": f"Bearer {token}"})
    assert bearer.status_code == 200 and bearer.json()["headers"]["authorization"] == f"Bearer {token}"

    logout = browser.client.post(f"{stack.broker.url}/logout", headers={"Origin": stack.broker.url})
    assert logout.status_code == 303
    refused = client.get(f"{proxy.url}/dashboard", headers=cookie)
    assert refused.status_code == 302
    assert refused.headers["location"].startswith(f"{stack.broker.url}/login?return_to=")


def test_an_unreachable_broker_is_a_503_with_retry_after(tmp_path: Path, app_server: ThreadedServer,
                                                         client: httpx.Client) -> None:
    nobody = free_port()  # nothing listens here
    with run_nginx(tmp_path, broker=f"127.0.0.1:{nobody}", app=f"127.0.0.1:{app_server.port}") as proxy:
        response = client.get(f"{proxy.url}/")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert "location" not in response.headers


def test_an_anonymous_browser_signs_in_and_lands_on_the_page_it_asked_for(gated: tuple[Stack, Nginx],
                                                                          browser: Browser) -> None:
    _, proxy = gated
    original = f"{proxy.url}/reports/weekly?team=a"
    consent = browser.get(original)  # nginx -> the broker's /login -> TikTok's consent page
    assert consent.status_code == 200 and "request_id" in consent.text
    page = browser.consent(consent, user=ALICE)  # -> /callback -> back through nginx to the app
    assert page.status_code == 200 and str(page.url) == original
    assert page.json()["path"] == "/reports/weekly" and page.json()["query"] == "team=a"
    assert page.json()["headers"]["x-auth-request-open-id"] == ALICE
