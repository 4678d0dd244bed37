"""One redis-server (or Sentinel) process for the tests: its config file, its folder, its own client."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from broker.store.embedded import free_port, stop_process
from tests.support.tls_files import TlsFiles

REDIS_SERVER = shutil.which("redis-server")
requires_redis_server = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")

USER = "broker"  # the ACL user every test server knows; the default user is off
START_TIMEOUT = 15.0
T = TypeVar("T")


def wait_for(check: Callable[[], T], *, timeout: float = START_TIMEOUT, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy (exceptions count as "not yet")."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{what} not reached within {timeout:.0f}s (last error: {last!r})")


_HANDED_OUT: set[int] = set()


def distinct_port() -> int:
    """A free loopback port not handed out before in this run (free_port alone may repeat one at once)."""
    while (port := free_port()) in _HANDED_OUT:
        pass
    _HANDED_OUT.add(port)
    return port


class RedisProcess:
    """A redis-server (or, with `sentinel`, a Sentinel) on loopback: a plain port, a TLS port, or both; with
    `cluster`, a Cluster bus port as well."""

    def __init__(self, directory: Path, password: str, *, tls: TlsFiles | None = None, plain: bool = True,
                 sentinel: bool = False, cluster: bool = False, settings: list[str] | None = None) -> None:
        assert plain or tls, "a server needs a plain port, a TLS port, or both"
        self.directory = directory
        self.password = password
        self.tls = tls
        self.plain = plain
        self.sentinel = sentinel
        self.cluster = cluster
        self.settings = settings or []
        self.process: subprocess.Popen[bytes] | None = None
        self._pick_ports()

    def _pick_ports(self) -> None:
        self.port = distinct_port() if self.plain else 0
        self.tls_port = distinct_port() if self.tls else 0
        self.bus_port = distinct_port() if self.cluster else 0

    @property
    def address(self) -> tuple[str, int]:
        """Where other servers and the Sentinels reach this one: over TLS whenever it has a TLS port."""
        return "127.0.0.1", self.tls_port or self.port

    def config(self) -> str:
        lines = ["bind 127.0.0.1", f"port {self.port}", f"dir {self.directory}", "logfile redis.log",
                 "daemonize no", "protected-mode yes", "save \"\"", "appendonly no",
                 "user default off", f"user {USER} on >{self.password} ~* &* +@all"]
        if self.tls:
            lines += [f"tls-port {self.tls_port}", f"tls-cert-file {self.tls.server_cert}",
                      f"tls-key-file {self.tls.server_key}", f"tls-ca-cert-file {self.tls.ca}",
                      "tls-auth-clients yes", "tls-replication yes"]
        if not self.sentinel:  # replication links log in as the ACL user; full syncs start at once
            lines += [f"masteruser {USER}", f"masterauth {self.password}", "repl-diskless-sync-delay 0"]
        if self.cluster:
            lines += ["cluster-enabled yes", "cluster-config-file nodes.conf", f"cluster-port {self.bus_port}"]
        return "\n".join(lines + self.settings) + "\n"

    def start(self) -> RedisProcess:
        assert REDIS_SERVER is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / ("sentinel.conf" if self.sentinel else "redis.conf")
        config.write_text(self.config())
        args = [REDIS_SERVER, str(config), *(["--sentinel"] if self.sentinel else [])]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        return self

    def wait_ready(self, *, attempts: int = 3) -> None:
        """Wait until it answers; if another process took one of its ports meanwhile, start again on new ones."""
        def answers() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise PortTaken if "Address already in use" in self.log() else RuntimeError(
                    f"redis-server exited; see {self.directory / 'redis.log'}")
            with self.client(socket_timeout=1) as client:
                return bool(client.ping())
        for attempt in range(attempts):
            try:
                wait_for(answers, what=f"redis-server in {self.directory}")
                return
            except PortTaken:
                if attempt == attempts - 1:
                    raise
                self._pick_ports()
                (self.directory / "nodes.conf").unlink(missing_ok=True)  # a Cluster node's record of its old ports
                self.start()

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def client(self, **extra: Any) -> redis.Redis:
        """A test's own connection, with the ACL user (over TLS when the server has no plain port); it does not
        retry, so that a test sees each failure as it happens."""
        host, port = ("127.0.0.1", self.port) if self.port else self.address
        tls = self.tls.client_kwargs() if self.tls and not self.port else {}
        options: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 2, "retry": Retry(NoBackoff(), 0),
                                   **tls, **extra}
        return redis.Redis(host=host, port=port, username=USER, password=self.password, decode_responses=True,
                           **options)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.running:
            assert self.process is not None
            stop_process(self.process)


class PortTaken(Exception):
    """redis-server could not listen on a port it was given: something else took it first."""
