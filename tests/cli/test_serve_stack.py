"""`broker serve` runs on the event loop and HTTP parser uvicorn picks (uvloop, httptools), says so, and scales to
several worker processes on one port."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import uvloop

from broker.serving import run_servers, uvicorn_config
from broker.store.embedded import free_port
from tests.cli import alive, port_is_open, production_env, running_broker
from tests.conftest import vault_entry, vault_key


def _start_up_line(stderr: str) -> dict[str, Any]:
    for line in stderr.splitlines():
        if line.startswith("{") and "serving on" in line:
            return dict(json.loads(line))
    raise AssertionError(f"no start-up line:\n{stderr}")


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def test_the_commands_serve_on_the_loop_uvicorn_picks_not_a_plain_asyncio_run() -> None:
    """The servers run inside uvicorn's loop factory (uvloop here), which a plain asyncio.run would bypass."""
    seen: list[type[asyncio.AbstractEventLoop]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        seen.append(type(asyncio.get_running_loop()))
        await send({"type": "lifespan.startup.failed", "message": "enough"})  # the server stops at once

    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit):  # uvicorn's answer to a failed start-up
            run_servers([uvicorn_config(app, "127.0.0.1", free_port())])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen == [uvloop.Loop]


@pytest.mark.slow
def test_serve_says_what_it_runs_on_and_serves_with_two_workers(redis_url: str, keys_dir: Path,
                                                                 tmp_path: Path) -> None:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = production_env(redis_url, keys_dir, vault_entry(vault_key()), ISSUER=issuer)
    args = ("serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2")
    with running_broker(*args, env=env, cwd=tmp_path) as broker:
        assert broker.wait_for(f"{issuer}/readyz").json()["checks"] == {"redis": "ok", "signing_key": "ok"}
        line = _start_up_line(broker.stderr())
        assert line["message"] == "serving on uvloop with httptools, Redis replies parsed by hiredis, 2 workers"
        assert (line["loop"], line["http"], line["redis_parser"]) == ("uvloop", "httptools", "hiredis")
        workers = [pid for pid in broker.children() if "spawn_main" in _command(pid)]
        assert len(workers) == 2, broker.children()
        # Each worker logs JSON lines of its own (uvicorn's "Application startup complete" among them), and no
        # access log line, as one process would not.
        deadline = time.monotonic() + 10
        while broker.stderr().count('"Application startup complete."') < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = [json.loads(entry) for entry in broker.stderr().splitlines() if entry.startswith("{")]
        assert sum(line["message"] == "Application startup complete." for line in lines) == 2, broker.stderr()
        assert not any(line["logger"] == "uvicorn.access" for line in lines), broker.stderr()
        assert broker.stop(signal.SIGTERM) == 0, broker.stderr()
        assert not any(alive(pid) for pid in workers)
        assert not port_is_open(port)
        assert "Traceback" not in broker.stderr()


@pytest.mark.slow
def test_two_workers_on_an_embedded_redis_stop_it_on_sigterm(keys_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = production_env("", keys_dir, vault_entry(vault_key()), ISSUER=issuer, DATA_DIR=str(tmp_path / "data"))
    args = ("serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2")
    with running_broker(*args, env=env, cwd=tmp_path) as broker:
        assert broker.wait_for(f"{issuer}/readyz").json()["checks"]["redis"] == "ok"
        children = broker.children()
        assert sorted("redis-server" in _command(pid) for pid in children).count(True) == 1, children
        assert [pid for pid in children if "spawn_main" in _command(pid)], children
        # The broker waits for the workers and for redis-server (which flushes its file on SIGTERM) before it
        # exits. multiprocessing's resource tracker is not waited for: it ends on its own once the broker's end
        # of its pipe closes, a moment after the broker has gone, so it gets a deadline instead.
        waited_for = [pid for pid in children if "resource_tracker" not in _command(pid)]
        trackers = [pid for pid in children if pid not in waited_for]
        assert broker.stop(signal.SIGTERM) == 0, broker.stderr()
        assert not any(alive(pid) for pid in waited_for)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in trackers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in trackers)


def test_serve_refuses_a_worker_count_out_of_range(tmp_path: Path) -> None:
    from broker.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--workers", "0"])
