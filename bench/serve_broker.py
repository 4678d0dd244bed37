"""`python -m bench.serve_broker --port N [--workers W]`: the real broker app, configured from BROKER_* variables."""

from __future__ import annotations

from starlette.applications import Starlette

from bench.serving import port_argument, serve_factory
from broker.app import create_app
from broker.config import load_settings


def create() -> Starlette:
    """The app factory each uvicorn worker calls."""
    return create_app(load_settings())


def main() -> None:
    args = port_argument()
    serve_factory("bench.serve_broker:create", args.port, args.workers)


if __name__ == "__main__":
    main()
