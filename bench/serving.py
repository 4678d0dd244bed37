"""One uvicorn configuration for the servers the benchmarks start beside `broker serve` (the bare floor, the
emulator), so that the sides differ only in the app: the options and the event loop and parser `broker serve`
uses (broker/serving.py), minus its info-level log."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import uvicorn

from broker.serving import MAX_HEAD_BYTES, http_protocol

# The options `broker serve` uses (see broker/serving.py), minus the info-level log: no access log, uvicorn's own
# choice of loop, and the broker's HTTP protocol (httptools with its cap on request heads).
UVICORN_OPTIONS: dict[str, Any] = {
    "host": "127.0.0.1",
    "log_level": "warning",
    "access_log": False,
    "server_header": False,
    "proxy_headers": False,
    "lifespan": "on",
    "loop": "auto",
    "http": http_protocol(),
    "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
}


def server_stack() -> dict[str, str]:
    """The event loop, HTTP parser and Redis reply parser every server here runs on (as `broker serve` reports)."""
    from broker.serving import stack_description, uvicorn_config

    return stack_description(uvicorn_config(None, "127.0.0.1", 0))


def port_argument(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--redirect-uri", action="append", default=[])
    return parser.parse_args(argv)


def serve(app: Any, port: int) -> None:
    uvicorn.run(app, port=port, **UVICORN_OPTIONS)


def serve_factory(factory: str, port: int, workers: int) -> None:
    """Serve `module:function` (an app factory) with `workers` processes sharing the listening socket, as
    `uvicorn --workers N --factory` does; with one worker it runs in this process, like serve()."""
    uvicorn.run(factory, factory=True, port=port, workers=workers, **UVICORN_OPTIONS)
