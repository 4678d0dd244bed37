"""`broker emulator`: the TikTok emulator on its own port."""

from __future__ import annotations

import signal
from pathlib import Path

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
