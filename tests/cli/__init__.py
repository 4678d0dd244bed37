"""Helpers for tests that run the real `broker` command in a child process, with a controlled environment."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from broker.store.embedded import stop_process

START_DEADLINE = 15.0
STOP_DEADLINE = 10.0
PROBLEM_LINE = re.compile(r"^  - (BROKER_[A-Z_]+):", re.MULTILINE)


def broker_env(**variables: str) -> dict[str, str]:
    """Only PATH and HOME from the outside, plus the given BROKER_* variables (named without the prefix)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", str(Path.home()))}
    env.update({f"BROKER_{name}": value for name, value in variables.items()})
    return env


def run_broker(*args: str, env: dict[str, str], cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "broker", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False)


def named_variables(stderr: str) -> set[str]:
    """The variables a `Configuration problems:` listing names, one per `  - BROKER_X: ...` line."""
    return set(PROBLEM_LINE.findall(stderr))


@dataclass
class Running:
    """A `broker` command running in the background; its output goes to files (no pipe can fill up)."""

    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_for(self, url: str, *, status: int = 200, deadline: float = START_DEADLINE) -> httpx.Response:
        """Poll `url` until it answers `status`; fail early, with the output, if the process exits."""
        end = time.monotonic() + deadline
        last: object = None
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise AssertionError(f"broker exited with {self.process.returncode} before {url} answered:\n"
                                     f"{self.stderr()}")
            try:
                response = httpx.get(url, timeout=1.0)
            except httpx.TransportError as exc:
                last = exc
            else:
                if response.status_code == status:
                    return response
                last = response.status_code
            time.sleep(0.05)
        raise AssertionError(f"{url} did not answer {status} within {deadline}s (last: {last!r}):\n{self.stderr()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_DEADLINE) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def children(self) -> list[int]:
        """Pids of the direct children (Linux /proc)."""
        found: list[int] = []
        for task in Path(f"/proc/{self.pid}/task").glob("*"):
            try:
                found += [int(pid) for pid in (task / "children").read_text().split()]
            except OSError:
                continue
        return found


@contextmanager
def running_broker(*args: str, env: dict[str, str], cwd: Path) -> Iterator[Running]:
    """Start `broker ARGS`; whatever happens, it is stopped (SIGTERM, then SIGKILL) when the block ends."""
    out, err = cwd / f"broker-{time.monotonic_ns()}.out", cwd / f"broker-{time.monotonic_ns()}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "broker", *args], env=env, cwd=cwd, stdout=stdout,
                                   stderr=stderr, stdin=subprocess.DEVNULL)
    running = Running(process, out, err)
    try:
        yield running
    finally:
        stop_process(process, grace=STOP_DEADLINE)


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def port_is_open(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


CLIENT_SECRET = "cs-7f3a9c1e-never-print-me"
CLIENT_KEY = "aw1234client"


def production_env(redis_url: str, keys_dir: Path, vault_keys: str, **overrides: str) -> dict[str, str]:
    """A complete, valid production environment; an override of "" leaves that variable out entirely."""
    variables = {
        "ISSUER": "https://auth.example.com", "REDIS_URL": redis_url, "KEYS_DIR": str(keys_dir),
        "VAULT_KEYS": vault_keys, "TIKTOK_CLIENT_KEY": CLIENT_KEY, "TIKTOK_CLIENT_SECRET": CLIENT_SECRET,
        **overrides,
    }
    return broker_env(**{name: value for name, value in variables.items() if value != ""})
