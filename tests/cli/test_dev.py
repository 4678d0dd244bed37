"""`broker dev`: the environment it fills (unit), and the whole stack it runs (broker + emulator + Redis)."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from broker.config import parse_vault_keys
from broker.devsetup import EMULATOR_CLIENT_SECRET, dev_environment
from broker.store.embedded import free_port
from tests.cli import alive, broker_env, run_broker, running_broker
from tests.conftest import vault_entry, vault_key

OPEN_LINE = re.compile(r"Open (http://\S+)")
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (debug|info|warning|error|critical) +[\w.]+: ")


# dev_environment, in process.

def test_set_variables_are_kept_untouched(tmp_path: Path) -> None:
    entry = vault_entry(vault_key("mine"))
    given = {
        "PATH": "/usr/bin", "BROKER_ISSUER": "http://localhost:9999", "BROKER_REDIS_URL": "redis://h:6379/0",
        "BROKER_DATA_DIR": str(tmp_path / "data"), "BROKER_VAULT_KEYS": entry,
        "BROKER_TIKTOK_SCOPES": "user.info.basic", "BROKER_TIKTOK_AUTHORIZE_URL": "https://t.example/auth",
        "BROKER_TIKTOK_API_URL": "https://t.example", "BROKER_TIKTOK_CLIENT_KEY": "my-key",
        "BROKER_TIKTOK_CLIENT_SECRET": "my-secret-value",
    }
    env, notes, emulate = dev_environment(given, broker_port=8080, emulator_port=8081)
    assert env == given
    assert notes == [] and emulate is False
    assert not (tmp_path / "data").exists()  # no dev vault key is made when one is given


def test_missing_variables_are_filled_and_notes_hide_secrets(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env, notes, emulate = dev_environment({"BROKER_DATA_DIR": str(data), "BROKER_ISSUER": ""}, broker_port=9100,
                                          emulator_port=9101)
    assert emulate is True
    assert env["BROKER_ISSUER"] == "http://127.0.0.1:9100"  # empty counts as unset
    assert env["BROKER_TIKTOK_AUTHORIZE_URL"] == "http://127.0.0.1:9101/v2/auth/authorize/"
    assert env["BROKER_TIKTOK_API_URL"] == "http://127.0.0.1:9101"
    assert env["BROKER_TIKTOK_CLIENT_KEY"] and env["BROKER_TIKTOK_CLIENT_SECRET"] == EMULATOR_CLIENT_SECRET
    assert "BROKER_REDIS_URL" not in env
    (vault,) = parse_vault_keys(env["BROKER_VAULT_KEYS"])
    assert len(vault.key) == 32
    text = "\n".join(notes)
    assert EMULATOR_CLIENT_SECRET not in text
    assert env["BROKER_VAULT_KEYS"] not in text and env["BROKER_VAULT_KEYS"].partition(":")[2] not in text
    for name in ("ISSUER", "TIKTOK_API_URL", "TIKTOK_CLIENT_SECRET", "VAULT_KEYS", "REDIS_URL"):
        assert f"BROKER_{name}" in text
    assert "BROKER_DATA_DIR" not in text  # it was set


def test_a_given_client_secret_never_shows_in_the_notes(tmp_path: Path) -> None:
    _, notes, _ = dev_environment({"BROKER_DATA_DIR": str(tmp_path), "BROKER_TIKTOK_CLIENT_SECRET": "s3cr3t-x"},
                                  broker_port=1, emulator_port=2)
    assert not any("s3cr3t-x" in note for note in notes)


@pytest.mark.parametrize(("given", "emulated"), [
    ({}, True),
    ({"BROKER_TIKTOK_AUTHORIZE_URL": "https://www.tiktok.com/v2/auth/authorize/"}, False),
    ({"BROKER_TIKTOK_API_URL": "https://open.tiktokapis.com"}, False),
    ({"BROKER_TIKTOK_AUTHORIZE_URL": "https://a.example/", "BROKER_TIKTOK_API_URL": "https://b.example"}, False),
])
def test_the_emulator_runs_only_when_no_tiktok_url_is_set(given: dict[str, str], emulated: bool,
                                                          tmp_path: Path) -> None:
    env, _, emulate = dev_environment({"BROKER_DATA_DIR": str(tmp_path), **given}, broker_port=1, emulator_port=2)
    assert emulate is emulated
    emulator_urls = [v for k, v in env.items() if k.startswith("BROKER_TIKTOK_") and "127.0.0.1:2" in v]
    assert bool(emulator_urls) is emulated
    if not emulated:  # real TikTok: no fake credentials are slipped in
        assert "BROKER_TIKTOK_CLIENT_KEY" not in env and "BROKER_TIKTOK_CLIENT_SECRET" not in env


def test_the_dev_vault_key_is_private_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default data folder is relative to the working directory
    first, _, _ = dev_environment({}, broker_port=1, emulator_port=2)
    path = tmp_path / ".broker-dev" / "vault-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == first["BROKER_VAULT_KEYS"]
    second, _, _ = dev_environment({}, broker_port=3, emulator_port=4)
    assert second["BROKER_VAULT_KEYS"] == first["BROKER_VAULT_KEYS"]


# The real command.

def _redis_children(pids: list[int]) -> list[int]:
    found = []
    for pid in pids:
        try:
            if "redis-server" in Path(f"/proc/{pid}/cmdline").read_text():
                found.append(pid)
        except OSError:
            continue
    return found


def test_dev_with_a_given_redis_runs_broker_and_emulator(redis_url: str, tmp_path: Path) -> None:
    port, emulator_port = free_port(), free_port()
    base, emulator = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{emulator_port}"
    env = broker_env(REDIS_URL=redis_url)
    with running_broker("dev", "--port", str(port), "--emulator-port", str(emulator_port), env=env,
                        cwd=tmp_path) as broker:
        broker.wait_for(f"{base}/healthz")
        assert broker.wait_for(f"{base}/readyz").json()["checks"] == {"redis": "ok", "signing_key": "ok"}
        assert broker.children() == [], "an external Redis was given: no redis-server may be started"
        stderr = broker.stderr()
        assert OPEN_LINE.findall(stderr) == [f"{base}/"], stderr
        assert "embedded Redis" not in stderr and "Embedded Redis" not in stderr
        vault_file = tmp_path / ".broker-dev" / "vault-key"
        assert stat.S_IMODE(vault_file.stat().st_mode) == 0o600
        assert vault_file.read_text().strip().partition(":")[2] not in stderr
        assert EMULATOR_CLIENT_SECRET not in stderr
        assert len(list((tmp_path / "keys").glob("*.pem"))) == 2  # ES256 (access tokens), RS256 (ID tokens)

        assert httpx.get(f"{emulator}/", timeout=5).status_code == 200
        login = httpx.get(f"{base}/login", timeout=5)
        assert login.status_code in (302, 303)
        location = login.headers["location"]
        assert location.startswith(f"{emulator}/v2/auth/authorize/")
        query = parse_qs(urlsplit(location).query)
        assert query["redirect_uri"] == [f"{base}/callback"]
        consent = httpx.get(location, timeout=5)  # the emulator knows this app and this redirect URI
        assert consent.status_code == 200, consent.text
        assert broker.stop(signal.SIGTERM) == 0, broker.stderr()
        # A person reads these lines: time, level, logger and message, never JSON objects.
        logged = [line for line in broker.stderr().splitlines() if LOG_LINE.match(line)]
        assert any("Uvicorn running" in line or "Application startup complete" in line for line in logged), stderr
        assert not any(line.lstrip().startswith("{") for line in broker.stderr().splitlines())


@pytest.mark.parametrize("taken", ["--port", "--emulator-port"])
def test_dev_says_in_one_line_which_port_is_taken(taken: str, redis_url: str, tmp_path: Path) -> None:
    ports = {"--port": free_port(), "--emulator-port": free_port()}
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", ports[taken]))
        holder.listen()
        result = run_broker("dev", *(str(part) for pair in ports.items() for part in pair),
                            env=broker_env(REDIS_URL=redis_url), cwd=tmp_path, timeout=30)
    assert result.returncode == 2
    complaint = [line for line in result.stderr.splitlines() if "in use" in line]
    assert len(complaint) == 1, result.stderr
    assert f"port {ports[taken]} " in complaint[0] and taken in complaint[0]
    assert "Traceback" not in result.stderr and "{" not in result.stderr
    assert not list((tmp_path / "keys").glob("*.pem"))  # nothing was set up for a start that cannot happen


def test_dev_honours_a_given_client_key_and_secret(redis_url: str, tmp_path: Path) -> None:
    """Credentials set in the shell are used by the broker; the emulated app must be registered with them."""
    port, emulator_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    env = broker_env(REDIS_URL=redis_url, TIKTOK_CLIENT_KEY="awmykey123", TIKTOK_CLIENT_SECRET="my-own-secret-9")
    with running_broker("dev", "--port", str(port), "--emulator-port", str(emulator_port), env=env,
                        cwd=tmp_path) as broker:
        broker.wait_for(f"{base}/healthz")
        location = httpx.get(f"{base}/login", timeout=5).headers["location"]
        assert parse_qs(urlsplit(location).query)["client_key"] == ["awmykey123"]
        assert httpx.get(location, timeout=5).status_code == 200
        assert "my-own-secret-9" not in broker.stderr()


def test_dev_without_redis_runs_an_embedded_one_and_stops_it(tmp_path: Path) -> None:
    port, emulator_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    redis_pids: list[int] = []
    with running_broker("dev", "--port", str(port), "--emulator-port", str(emulator_port), env=broker_env(),
                        cwd=tmp_path) as broker:
        try:
            ready = broker.wait_for(f"{base}/readyz")
            assert ready.json()["checks"] == {"redis": "ok", "signing_key": "ok"}
            redis_pids = _redis_children(broker.children())
            assert len(redis_pids) == 1, broker.children()
            (redis_pid,) = redis_pids
            assert Path(f"/proc/{redis_pid}/cwd").resolve() == (tmp_path / ".broker-dev" / "redis").resolve()
            socket_dirs = [Path(part.split(":", 1)[1]).parent
                           for part in Path(f"/proc/{redis_pid}/cmdline").read_text().replace("\0", " ").split()
                           if part.startswith("unixsocket:")]
            assert socket_dirs and all(directory.exists() for directory in socket_dirs)
            assert "BROKER_REDIS_URL not set" in broker.stderr()
            code = broker.stop(signal.SIGINT)
            assert code in (0, 130), broker.stderr()
            assert "Traceback" not in broker.stderr()
            assert not alive(redis_pid), "stopping `broker dev` left its redis-server running"
            assert all(not directory.exists() for directory in socket_dirs)
        finally:
            for pid in redis_pids:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)


def test_the_emulated_app_sends_its_webhooks_to_the_dev_broker(tmp_path: Path) -> None:
    """Deauthorizations and posting events must reach `broker dev`'s broker, as they would from TikTok."""
    from broker.config import load_settings
    from broker.devsetup import emulated_app
    from tiktok_emulator import EmulatorConfig

    env, _, emulate = dev_environment({"BROKER_DATA_DIR": str(tmp_path)}, broker_port=9100, emulator_port=9101)
    assert emulate
    config = EmulatorConfig(**emulated_app(load_settings(env), 9101))  # type: ignore[arg-type]
    assert config.webhook_url == "http://127.0.0.1:9100/webhooks/tiktok"
    assert config.redirect_uris == ("http://127.0.0.1:9100/callback",)
    assert config.client_secret == EMULATOR_CLIENT_SECRET and config.public_url == "http://127.0.0.1:9101"
