"""deploy/docker-compose.yml and the Dockerfile agree with the broker: its settings loader, its command line, the
emulator's registration, and each other. No Docker engine is needed (none runs in CI)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from broker.cli import build_parser
from broker.config import load_settings, production_problems
from broker.store.redis import parse_redis_url
from broker.web.routes import ROUTES
from tiktok_emulator.__main__ import build_parser as emulator_parser
from tiktok_emulator.__main__ import config_from as emulator_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
# ${NAME}, ${NAME:-default}, ${NAME-default}; $$ is a literal dollar (Compose's interpolation rules).
VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}")
PINNED = re.compile(r"^[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}$")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, default = match.groups()
        current = env.get(name)
        if (operator == ":-" and not current) or (operator == "-" and current is None):
            return default
        assert current is not None, f"${{{name}}} has no default and is not set"
        return current

    return VARIABLE.sub(substitute, value)


def compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    loaded: dict[str, Any] = interpolate(yaml.safe_load(COMPOSE.read_text()), env or {})
    return loaded


def service(name: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    found: dict[str, Any] = compose(env)["services"][name]
    return found


def environment(name: str, env: dict[str, str] | None = None) -> dict[str, str]:
    return {key: str(value) for key, value in (service(name, env).get("environment") or {}).items()}


def option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


class RecordingEnv(dict[str, str]):
    """An environment that notes every name the settings loader asks for."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)


def test_the_broker_service_passes_settings_that_serve_accepts() -> None:
    env = RecordingEnv(environment("broker"))
    settings = load_settings(env)
    assert production_problems(settings) == []
    unknown = {name for name in env if name.startswith("BROKER_")} - env.asked
    assert not unknown, f"variables the broker never reads (typos?): {sorted(unknown)}"
    assert settings.redis_url and settings.vault_keys
    assert str(settings.keys_dir) == "/keys"


def test_redis_keeps_an_append_only_file_behind_a_password_the_broker_uses() -> None:
    redis = service("redis")
    assert PINNED.match(redis["image"]) and redis["image"].startswith("redis:")
    command = redis["command"]
    assert option(command, "--appendonly") == "yes"
    password = option(command, "--requirepass")
    target = parse_redis_url(environment("broker")["BROKER_REDIS_URL"])
    assert target.password == password and target.hosts == (("redis", 6379),)
    assert environment("redis")["REDISCLI_AUTH"] == password  # the health check authenticates too
    assert "redis-data:/data" in redis["volumes"] and "redis-data" in compose()["volumes"]
    # An operator's own password replaces the trial one everywhere at once.
    own = {"REDIS_PASSWORD": "s3cret-from-the-environment"}
    assert option(service("redis", own)["command"], "--requirepass") == own["REDIS_PASSWORD"]
    assert parse_redis_url(environment("broker", own)["BROKER_REDIS_URL"]).password == own["REDIS_PASSWORD"]


def test_the_emulator_is_registered_for_exactly_the_broker_it_serves() -> None:
    settings = load_settings(environment("broker"))
    emulator = service("emulator")
    assert emulator["build"]["target"] == "emulator"  # its own image, built from the Dockerfile's emulator stage
    assert "FROM base AS emulator" in DOCKERFILE.read_text()
    args = emulator_parser().parse_args(emulator["command"])
    config = emulator_config(args)  # validates the registration as the emulator will
    assert config.redirect_uris == (settings.redirect_uri,)
    assert config.webhook_url == f"{settings.issuer}/webhooks/tiktok"
    assert (config.client_key, config.client_secret) == (settings.tiktok_client_key,
                                                         settings.tiktok_client_secret.reveal())
    # Broker (server to server) and browser both reach it at the public URL, which is loopback in both places
    # because the emulator lives in the broker's network namespace.
    assert emulator["network_mode"] == "service:broker"
    assert settings.tiktok_api_url == config.public_url
    assert settings.tiktok_authorize_url == f"{config.public_url}/v2/auth/authorize/"
    assert args.port == urlsplit(config.public_url).port


def test_ports_commands_and_health_checks_line_up() -> None:
    broker = service("broker")
    args = build_parser().parse_args(broker["command"])
    assert args.func.__name__ == "cmd_serve" and args.host == "0.0.0.0"  # noqa: S104 - inside the container
    emulator_args = emulator_parser().parse_args(service("emulator")["command"])
    published = {int(entry.split(":")[-1]): entry for entry in broker["ports"]}
    assert set(published) == {args.port, emulator_args.port}
    assert all(entry.startswith("127.0.0.1:") for entry in broker["ports"])  # a trial is not on the network
    assert f"127.0.0.1:{args.port}/healthz" in " ".join(broker["healthcheck"]["test"])
    assert f"127.0.0.1:{emulator_args.port}/" in " ".join(service("emulator")["healthcheck"]["test"])
    assert load_settings(environment("broker")).issuer == f"http://127.0.0.1:{args.port}"


def test_services_start_in_order_once_what_they_need_is_healthy() -> None:
    services = compose()["services"]
    assert services["broker"]["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert services["emulator"]["depends_on"] == {"broker": {"condition": "service_healthy"}}
    for name in ("redis", "broker"):
        assert services[name]["healthcheck"]["test"]


def test_keys_are_read_only_for_the_broker_and_made_by_a_one_line_command() -> None:
    broker, keys = service("broker"), service("keys")
    assert "keys:/keys:ro" in broker["volumes"]
    assert "keys:/keys" in keys["volumes"] and keys["profiles"] == ["tools"]  # not started by `up`
    assert keys["entrypoint"] == ["broker", "keys"]
    args = build_parser().parse_args([*keys["entrypoint"][1:], "new"])
    assert args.func.__name__ == "cmd_keys" and args.keys_command == "new"
    assert str(load_settings(environment("keys")).keys_dir) == "/keys"
    # The broker's root file system can be read-only: it writes nowhere but /tmp.
    assert broker["read_only"] is True and "/tmp" in broker["tmpfs"]  # noqa: S108 - the container's own /tmp


def test_the_dockerfile_pins_its_base_runs_unprivileged_and_checks_health() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines() if line.strip()
             and not line.startswith("#")]
    bases = [line.split()[1] for line in lines if line.startswith("FROM ")]
    external = [base for base in bases if ":" in base]
    assert external and all(PINNED.match(base) for base in external)
    user = [line.split()[1] for line in lines if line.startswith("USER ")][-1]
    assert user.split(":")[0].isdigit() and user.split(":")[0] != "0"
    text = DOCKERFILE.read_text()
    health = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", text)
    assert health and health.group(2) in {route.path for route in ROUTES}
    assert f"EXPOSE {health.group(1)}" in text and f'"--port", "{health.group(1)}"' in text
    assert "BROKER_KEYS_DIR=/keys" in text  # where the compose file mounts the keys


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_docker_compose_accepts_the_file() -> None:
    command = _compose_command()
    if command is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install a compose tool (see .ci/run)")
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    # `config` parses, interpolates and validates against Compose's schema; it needs no engine.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", str(Path.home()))}
    result = subprocess.run([*command, "-f", str(COMPOSE), "config"], capture_output=True, text=True,
                            env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)
    assert set(rendered["services"]) == {"redis", "broker", "emulator", "keys"}
    assert rendered["services"]["broker"]["environment"] == environment("broker")
