"""`broker emulator`: the TikTok emulator on its own port."""

from __future__ import annotations

import hashlib
import signal
from pathlib import Path

import httpx

from broker.store.embedded import free_port
from tests.cli import broker_env, port_is_open, running_broker


def test_emulator_serves_its_home_page_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    args = ("emulator", "--port", str(port), "--redirect-uri", "http://127.0.0.1:1/callback")
    with running_broker(*args, env=broker_env(), cwd=tmp_path) as emulator:
        home = emulator.wait_for(f"http://127.0.0.1:{port}/")
        assert "text/html" in home.headers["content-type"]
        assert emulator.stop(signal.SIGTERM) == 0, emulator.stderr()
        assert not port_is_open(port)


def test_a_public_url_names_where_browsers_reach_the_emulator(tmp_path: Path) -> None:
    # In a container the emulator listens on 0.0.0.0, which no browser can open: --public-url says where to go.
    port = free_port()
    args = ("emulator", "--port", str(port), "--public-url", f"http://localhost:{port}")
    with running_broker(*args, env=broker_env(), cwd=tmp_path) as emulator:
        home = emulator.wait_for(f"http://127.0.0.1:{port}/")
        assert f'src="http://localhost:{port}/_emulator/avatars/' in home.text
        assert f'src="http://127.0.0.1:{port}/' not in home.text
        assert emulator.stop(signal.SIGTERM) == 0, emulator.stderr()


def test_an_sdk_redirect_uri_gets_sdk_style_codes(tmp_path: Path) -> None:
    port, app_link = free_port(), "https://app.example.com/tiktok/callback"
    args = ("emulator", "--port", str(port), "--sdk-redirect-uri", app_link)
    with running_broker(*args, env=broker_env(), cwd=tmp_path) as emulator:
        emulator.wait_for(f"http://127.0.0.1:{port}/")
        challenge = hashlib.sha256(b"v" * 43).hexdigest()
        issued = httpx.post(f"http://127.0.0.1:{port}/_emulator/sdk/authorize",
                            json={"redirect_uri": app_link, "code_challenge": challenge})
        assert issued.status_code == 201, issued.text
        token = httpx.post(f"http://127.0.0.1:{port}/v2/oauth/token/", data={
            "client_key": "emulator-client-key", "client_secret": "emulator-client-secret", "code_verifier": "v" * 43,
            "grant_type": "authorization_code", "code": issued.json()["code"], "redirect_uri": app_link})
        assert "access_token" in token.json(), token.text
        assert emulator.stop(signal.SIGTERM) == 0, emulator.stderr()
