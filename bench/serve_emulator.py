"""`python -m bench.serve_emulator --port N --redirect-uri URI...`: the TikTok emulator, no faults, no latency."""

from __future__ import annotations

from bench.serving import port_argument, serve
from tiktok_emulator import EmulatorConfig, create_emulator_app

# Far above what a benchmark sends, so the user-info rate limit never answers for the broker.
UNLIMITED = 1_000_000_000


def main() -> None:
    args = port_argument()
    config = EmulatorConfig(redirect_uris=tuple(args.redirect_uri), public_url=f"http://127.0.0.1:{args.port}",
                            rate_limit_per_minute=UNLIMITED)
    serve(create_emulator_app(config), args.port)


if __name__ == "__main__":
    main()
