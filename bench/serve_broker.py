"""`python -m bench.serve_broker --port N`: the real broker app, configured from BROKER_* variables."""

from __future__ import annotations

from bench.serving import port_argument, serve
from broker.app import create_app
from broker.config import load_settings


def main() -> None:
    args = port_argument()
    serve(create_app(load_settings()), args.port)


if __name__ == "__main__":
    main()
