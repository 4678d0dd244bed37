"""One uvicorn configuration for every server the benchmarks start, so the sides differ only in the app."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import uvicorn

# The options `broker serve` uses (see broker/cli.py), minus the info-level log: one worker, no access log.
UVICORN_OPTIONS: dict[str, Any] = {
    "host": "127.0.0.1",
    "log_level": "warning",
    "access_log": False,
    "server_header": False,
    "proxy_headers": False,
    "lifespan": "on",
}


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
