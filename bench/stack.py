"""Everything the figures run against, each part started on first use and all stopped at the end.

One real redis-server (EmbeddedRedis on a free loopback port), the TikTok emulator, the broker and the
bare floor app, each a child process. The broker is the shipped command, `python -m broker serve`, configured by
BROKER_* variables; the bare app and the emulator run under uvicorn with the options `broker serve` uses
(bench/serving.py), on the same event loop and HTTP parser: the stack checks the broker's start-up line for that.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from bench.processes import ServerProcess
from bench.serving import server_stack
from broker.clock import SystemClock
from broker.config import Settings, load_settings
from broker.signing.keyring import create_key
from broker.store.embedded import EmbeddedRedis, free_port

SCOPES = "user.info.basic,user.info.profile"
CLIENT_KEY = "emulator-client-key"
CLIENT_SECRET = "emulator-client-secret"  # noqa: S105 (the emulator's published fake)
BROKER_SLOTS = 2  # the emulator registers this many broker callbacks up front
# A confidential app of the broker's (figure peer): client_secret_basic, an OpenID scope, ES256 ID tokens.
APP_ID, APP_SECRET = "bench-app", "bench-app-secret-0123456789abcdef"
BROKER_COMMAND = ("serve", "--host", "127.0.0.1")  # `python -m broker serve`: what a deployment runs
START_UP_LINE = re.compile(r'"message": "serving on ([a-z0-9]+) with ([a-z0-9]+), Redis replies parsed by ([a-z]+)')


@dataclass(frozen=True)
class Broker:
    process: ServerProcess
    settings: Settings

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def port(self) -> int:
        return self.process.port


class Stack:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._exit = contextlib.ExitStack()
        self.broker_ports = tuple(free_port() for _ in range(BROKER_SLOTS))
        self.emulator_port = free_port()
        self._vault_entry = "bench:" + base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self._exit.close()

    @cached_property
    def keys_dir(self) -> Path:
        directory = self.workdir / "keys"
        clock = SystemClock()
        # ES256 signs access tokens; RS256 signs ID tokens, and `broker serve` refuses to start without one.
        for alg in ("ES256", "RS256"):
            create_key(directory, alg=alg, activate_at=clock.now() - 1, clock=clock, jwks_max_age=300)
        return directory

    @cached_property
    def redis(self) -> EmbeddedRedis:
        server = EmbeddedRedis(self.workdir / "redis", port=free_port())
        server.start()
        self._exit.callback(server.stop)
        return server

    @cached_property
    def clients_file(self) -> Path:
        from broker.clients import secret_digest

        path = self.workdir / "clients.json"
        path.write_text(json.dumps({"clients": [{
            "client_id": APP_ID, "client_secret_sha256": secret_digest(APP_SECRET),
            "token_endpoint_auth_method": "client_secret_basic", "redirect_uris": ["https://app.bench.example/cb"],
            "scopes": ["openid"], "id_token_signed_response_alg": "ES256"}]}))
        return path

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}"

    def broker_env(self, port: int, redis_url: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
        env.update({
            "BROKER_ISSUER": f"http://127.0.0.1:{port}",
            "BROKER_REDIS_URL": redis_url,
            "BROKER_KEYS_DIR": str(self.keys_dir),
            "BROKER_DATA_DIR": str(self.workdir / "data"),
            "BROKER_VAULT_KEYS": self._vault_entry,
            "BROKER_TIKTOK_CLIENT_KEY": CLIENT_KEY,
            "BROKER_TIKTOK_CLIENT_SECRET": CLIENT_SECRET,
            "BROKER_TIKTOK_AUTHORIZE_URL": f"{self.emulator_url}/v2/auth/authorize/",
            "BROKER_TIKTOK_API_URL": self.emulator_url,
            "BROKER_TIKTOK_SCOPES": SCOPES,
            "BROKER_TIKTOK_TIMEOUT": "10",
            "BROKER_RATE_LIMITS": "off",  # every load comes from 127.0.0.1: measure the work, not the limiter
            "BROKER_CLIENTS_FILE": str(self.clients_file),
        })
        return env

    def _start(self, process: ServerProcess) -> ServerProcess:
        process.start()
        self._exit.callback(process.stop)
        return process

    def _start_broker_command(self, name: str, port: int, env: dict[str, str], workers: int = 1) -> ServerProcess:
        """`python -m broker serve` on `port`, after checking that it serves on the stack the bare app uses."""
        process = self._start(ServerProcess(name, "broker", port, log_dir=self.workdir / "logs", env=env,
                                            args=(*BROKER_COMMAND, "--workers", str(workers)),
                                            ready_path="/healthz"))
        announced = START_UP_LINE.search(process.log_text())
        expected = server_stack()
        if announced is None or announced.groups() != (expected["loop"], expected["http"], expected["redis_parser"]):
            raise RuntimeError(f"{name} does not serve on {expected} like the bare app:\n{process.log_text()[:2000]}")
        return process

    def start_broker(self, name: str, slot: int, redis_url: str | None = None) -> Broker:
        """`broker serve` on broker_ports[slot]; `redis_url` defaults to the real Redis."""
        port = self.broker_ports[slot]
        env = self.broker_env(port, redis_url or self.redis.url)
        process = self._start_broker_command(name, port, env)
        # The bench process talks to Redis directly, never through a proxy it may be given.
        settings = load_settings({**env, "BROKER_REDIS_URL": self.redis.url})
        return Broker(process, settings)

    @cached_property
    def broker(self) -> Broker:
        return self.start_broker("broker", 0)

    def start_broker_with(self, name: str, **variables: str) -> ServerProcess:
        """`broker serve` on the real Redis with some BROKER_* variables changed (no login runs against it)."""
        port = free_port()
        return self._start_broker_command(name, port, {**self.broker_env(port, self.redis.url), **variables})

    def start_workers(self, name: str, *, broker: bool, workers: int) -> ServerProcess:
        """The broker (on the real Redis) or the bare app with `workers` uvicorn worker processes sharing one
        port. No login runs against these (their ports are not registered at the emulator)."""
        port = free_port()
        if broker:
            return self._start_broker_command(name, port, self.broker_env(port, self.redis.url), workers)
        return self._start(ServerProcess(name, "bench.serve_bare", port, log_dir=self.workdir / "logs",
                                         args=["--workers", str(workers)], ready_path="/auth/verify"))

    @cached_property
    def bare(self) -> ServerProcess:
        return self._start(ServerProcess("bare", "bench.serve_bare", free_port(), log_dir=self.workdir / "logs",
                                         ready_path="/auth/verify"))

    def start_bare_answering(self, headers: dict[str, str]) -> ServerProcess:
        """The bare app answering /auth/verify with these headers (the broker's answer, without its work)."""
        env = {**os.environ, "BENCH_BARE_ANSWER_HEADERS": json.dumps(headers)}
        return self._start(ServerProcess("bare-answer", "bench.serve_bare", free_port(), env=env,
                                         log_dir=self.workdir / "logs", ready_path="/auth/verify"))

    @cached_property
    def emulator(self) -> ServerProcess:
        args: list[str] = []
        for port in self.broker_ports:
            args += ["--redirect-uri", f"http://127.0.0.1:{port}/callback"]
        return self._start(ServerProcess("emulator", "bench.serve_emulator", self.emulator_port,
                                         log_dir=self.workdir / "logs", args=args))
