"""`broker serve`: refuses unsafe settings before listening; serves probes on --port; stops cleanly on signals."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from broker.clock import SystemClock
from broker.signing.keyring import create_key
from broker.store.embedded import free_port
from tests.cli import (
    CLIENT_SECRET,
    alive,
    named_variables,
    port_is_open,
    production_env,
    run_broker,
    running_broker,
)
from tests.conftest import vault_entry, vault_key

REFUSALS = {
    "http-public-issuer": ({"ISSUER": "http://auth.example.com"}, {"BROKER_ISSUER"}),
    "no-vault-keys": ({"VAULT_KEYS": ""}, {"BROKER_VAULT_KEYS"}),
    "no-tiktok-credentials": ({"TIKTOK_CLIENT_KEY": "", "TIKTOK_CLIENT_SECRET": ""},
                              {"BROKER_TIKTOK_CLIENT_KEY", "BROKER_TIKTOK_CLIENT_SECRET"}),
    "no-active-key": ({"KEYS_DIR": "pending-only"}, {"BROKER_KEYS_DIR"}),
    "all-at-once": ({"ISSUER": "http://auth.example.com", "VAULT_KEYS": "", "TIKTOK_CLIENT_SECRET": "",
                     "KEYS_DIR": "pending-only", "SESSION_TTL": "ten days"},
                    {"BROKER_ISSUER", "BROKER_VAULT_KEYS", "BROKER_TIKTOK_CLIENT_SECRET", "BROKER_KEYS_DIR",
                     "BROKER_SESSION_TTL"}),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_serve_refuses_unsafe_settings_without_listening(case: str, redis_url: str, keys_dir: Path,
                                                         tmp_path: Path) -> None:
    overrides, expected = REFUSALS[case]
    if overrides.get("KEYS_DIR") == "pending-only":
        clock = SystemClock()
        create_key(tmp_path / "pending-only", activate_at=clock.now() + 3600, clock=clock, jwks_max_age=300)
    env = production_env(redis_url, keys_dir, vault_entry(vault_key()), **overrides)
    port = free_port()
    started = time.monotonic()
    result = run_broker("serve", "--host", "127.0.0.1", "--port", str(port), env=env, cwd=tmp_path, timeout=20)
    assert result.returncode == 2, result.stderr
    assert named_variables(result.stderr) == expected, result.stderr
    assert "Refusing to serve" in result.stderr
    assert "Uvicorn running" not in result.stderr and not port_is_open(port)
    assert CLIENT_SECRET not in result.stdout + result.stderr
    assert time.monotonic() - started < 10


def _embedded_redis_child(pid_list: list[int]) -> int:
    for pid in pid_list:
        try:
            if "redis-server" in Path(f"/proc/{pid}/cmdline").read_text():
                return pid
        except OSError:
            continue
    raise AssertionError(f"no redis-server among the children {pid_list}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_answers_probes_on_its_port_and_stops_on_a_signal(sig: signal.Signals, redis_url: str,
                                                                keys_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"  # loopback: http is allowed
    env = production_env(redis_url, keys_dir, vault_entry(vault_key()), ISSUER=issuer)
    with running_broker("serve", "--host", "127.0.0.1", "--port", str(port), env=env, cwd=tmp_path) as broker:
        assert broker.wait_for(f"{issuer}/healthz").json() == {"status": "ok"}
        ready = broker.wait_for(f"{issuer}/readyz")
        assert ready.json()["checks"] == {"redis": "ok", "signing_key": "ok"}
        code = broker.stop(sig)
        assert code in ((0,) if sig == signal.SIGTERM else (0, 130)), broker.stderr()
        assert "Traceback" not in broker.stderr()
        assert not port_is_open(port)
        assert CLIENT_SECRET not in broker.stdout() + broker.stderr()


def test_serve_with_an_embedded_redis_and_a_relative_data_dir_stops_it_on_sigterm(keys_dir: Path,
                                                                                 tmp_path: Path) -> None:
    """No BROKER_REDIS_URL: serve runs its own redis-server under DATA_DIR and must not orphan it on SIGTERM."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = production_env("", keys_dir, vault_entry(vault_key()), ISSUER=issuer, DATA_DIR="data")
    redis_pid = None
    with running_broker("serve", "--host", "127.0.0.1", "--port", str(port), env=env, cwd=tmp_path) as broker:
        try:
            broker.wait_for(f"{issuer}/readyz")
            redis_pid = _embedded_redis_child(broker.children())
            assert Path(f"/proc/{redis_pid}/cwd").resolve() == (tmp_path / "data" / "redis").resolve()
            assert broker.stop(signal.SIGTERM) == 0, broker.stderr()
            assert not alive(redis_pid), "SIGTERM left the embedded redis-server running"
        finally:
            if redis_pid is not None and alive(redis_pid):
                os.kill(redis_pid, signal.SIGKILL)


def test_serve_says_in_one_line_that_its_port_is_taken(redis_url: str, keys_dir: Path, tmp_path: Path) -> None:
    import socket

    port = free_port()
    env = production_env(redis_url, keys_dir, vault_entry(vault_key()), ISSUER=f"http://127.0.0.1:{port}")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = run_broker("serve", "--host", "127.0.0.1", "--port", str(port), env=env, cwd=tmp_path, timeout=20)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"broker serve: port {port} on 127.0.0.1 is already in use (another broker?): stop what uses it, or pick "
        f"another port with --port {port + 10}"]
