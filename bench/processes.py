"""Servers as child processes (`python -m broker serve`, `python -m bench.serve_*`), so the load generator never
shares their GIL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from broker.store.embedded import stop_process

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0


class ServerProcess:
    def __init__(self, name: str, module: str, port: int, *, log_dir: Path, args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None, ready_path: str = "/") -> None:
        self.name = name
        self.module = module
        self.port = port
        self.args = tuple(args)
        self.env = dict(env if env is not None else os.environ)
        self.ready_path = ready_path
        self.log_path = log_dir / f"{name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self._process is not None, f"{self.name} is not running"
        return self._process.pid

    def start(self) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", self.module, *self.args, "--port", str(self.port)]
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
                                             stdout=log, stderr=subprocess.STDOUT)
        self._wait_until_ready()
        return self

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self._log_tail()}")
            try:
                httpx.get(self.url + self.ready_path, timeout=1.0)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {START_TIMEOUT:.0f}s:\n{self._log_tail()}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process)
