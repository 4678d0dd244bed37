"""The peer the broker is measured against: panva's oidc-provider on Node, on a Redis of its own.

bench/peer/ pins it (package.json, package-lock.json); the first run installs it there with `npm ci` (again
whenever the lock changes; node_modules is not committed). Where node or npm is missing, `unavailable()` says so
and the figure is skipped with that message.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from broker.store.embedded import EmbeddedRedis, free_port, stop_process

PEER_DIR = Path(__file__).resolve().parent / "peer"
CLIENT_ID, CLIENT_SECRET = "bench-app", "bench-app-secret-0123456789abcdef"
TOKEN_PATH, INTROSPECTION_PATH = "/token", "/token/introspection"
START_TIMEOUT = 30.0


def unavailable() -> str | None:
    """Why the peer cannot run here, or None."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node and npm are not installed (Node 20 or newer): the peer figure is skipped"
    return None


def install() -> None:
    """`npm ci` in bench/peer, unless node_modules already holds what the lock names."""
    lock, installed = PEER_DIR / "package-lock.json", PEER_DIR / "node_modules" / ".package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    result = subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=PEER_DIR,
                            capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"npm ci in {PEER_DIR} failed: {result.stderr.strip()[-500:]}")


@dataclass
class Peer:
    port: int
    process: subprocess.Popen[bytes]
    redis: EmbeddedRedis

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def mint(self, count: int) -> list[dict[str, str]]:
        """`count` grants, each with a refresh token and an opaque access token (outside the clock)."""
        answer = httpx.post(f"{self.url}/bench/tokens", params={"count": count}, timeout=60)
        answer.raise_for_status()
        return list(json.loads(answer.content))

    def stop(self) -> None:
        stop_process(self.process)
        self.redis.stop()


def start(workdir: Path) -> Peer:
    install()
    redis = EmbeddedRedis(workdir / "peer-redis", port=free_port())  # the same redis-server, a server of its own
    redis.start()
    port = free_port()
    env = {**os.environ, "PORT": str(port), "REDIS_URL": redis.url, "ISSUER": f"http://127.0.0.1:{port}"}
    log = (workdir / "logs" / "peer.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(["node", "server.mjs"], cwd=PEER_DIR, env=env, stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT)
    peer = Peer(port, process, redis)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            peer.stop()
            raise RuntimeError(f"the peer exited at start:\n{log.read_text(errors='replace')[-2000:]}")
        try:
            httpx.get(f"{peer.url}/.well-known/openid-configuration", timeout=1.0)
            return peer
        except httpx.TransportError:
            time.sleep(0.1)
    peer.stop()
    raise RuntimeError("the peer did not answer in time")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
