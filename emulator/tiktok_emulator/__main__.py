"""`tiktok-emulator` (or `python -m tiktok_emulator`): serve the emulator alone, on loopback by default."""

from __future__ import annotations

import argparse

import uvicorn

from tiktok_emulator.app import create_emulator_app
from tiktok_emulator.config import EmulatorConfig

DEFAULT_PORT = 8081


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tiktok-emulator", description="A TikTok emulator for development and tests")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--redirect-uri", action="append", default=[], help="a registered redirect URI")
    parser.add_argument("--sdk-redirect-uri", action="append", default=[],
                        help="an iOS or Android build's https redirect URI (SDK-style codes)")
    parser.add_argument("--webhook-url", default=None, help="where to deliver signed webhook events")
    parser.add_argument("--public-url", default=None,
                        help="the base URL browsers reach the emulator at (default http://HOST:PORT)")
    return parser


def config_from(args: argparse.Namespace) -> EmulatorConfig:
    return EmulatorConfig(redirect_uris=tuple(args.redirect_uri), sdk_redirect_uris=tuple(args.sdk_redirect_uri),
                          webhook_url=args.webhook_url,
                          public_url=args.public_url or f"http://{args.host}:{args.port}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    uvicorn.run(create_emulator_app(config_from(args)), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
