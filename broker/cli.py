"""The `broker` command: thin argument parsing that calls into the application. Nothing else lives here."""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import socket
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from broker.admin import cmd_check_config, cmd_clients, cmd_keys, cmd_vault, fail, parse_instant, settings_and_problems
from broker.client_entries import GRANT_TYPES
from broker.config import Settings, load_settings
from broker.errors import ConfigError
from broker.serving import Terminated, run_servers, uvicorn_config

DEV_EMULATOR_PORT = 8081
log = logging.getLogger("broker")


@contextlib.contextmanager
def _redis_for(settings: Settings) -> Iterator[Settings]:
    """Settings with a Redis URL: the configured one, or an embedded server run for the duration."""
    if settings.redis_url:
        yield settings
        return
    from broker.config import Secret
    from broker.store.embedded import EmbeddedRedis

    # Absolute: redis-server changes into --dir before opening --logfile, so a relative path breaks it.
    data_dir = (settings.data_dir / "redis").absolute()
    with EmbeddedRedis(data_dir) as server:
        print(f"Embedded Redis running, persisting to {data_dir}", file=sys.stderr)
        yield settings.with_overrides(redis_url=Secret(server.url))


EMULATOR_MISSING = ("it is a distribution of its own, for development and tests only: install it with "
                    "`pip install -e ./emulator` from a checkout (`make install` does), or set BROKER_TIKTOK_API_URL "
                    "and BROKER_TIKTOK_AUTHORIZE_URL to a TikTok of your own")


def _emulator_package() -> tuple[Any, Any] | None:
    """The emulator's config class and app factory, or None when the emulator is not installed."""
    try:
        from tiktok_emulator import EmulatorConfig, create_emulator_app
    except ModuleNotFoundError as missing:
        if missing.name != "tiktok_emulator":
            raise
        return None
    return EmulatorConfig, create_emulator_app


def _port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on host:port (checked before anything starts, so that the answer is
    one line rather than a server failing half-way through its start-up)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as error:
            return error.errno == errno.EADDRINUSE
    return False


def _ports_free(ports: Sequence[tuple[str, int, str]]) -> str | None:
    """The first (host, port, option) in use, as the one line to print; None when all are free."""
    for host, port, option in ports:
        if _port_in_use(host, port):
            return (f"port {port} on {host} is already in use (another broker?): stop what uses it, or pick "
                    f"another port with {option} {port + 10}")
    return None


def _workers(value: str) -> int:
    count = int(value)
    if not 1 <= count <= 64:
        raise argparse.ArgumentTypeError("must be between 1 and 64")
    return count


def cmd_serve(args: argparse.Namespace) -> int:
    from broker.app import create_app

    settings, problems = settings_and_problems(prepare_keys=True)
    if settings is None or problems:
        return fail(problems, "Refusing to serve with unsafe settings (use `broker dev` on a laptop):")
    taken = _ports_free([(args.host, args.port, "--port")])
    if taken:
        print(f"broker serve: {taken}", file=sys.stderr)
        return 2
    from broker.serving import WORKER_FACTORY, run_workers

    with _redis_for(settings) as ready:
        if args.workers > 1:
            run_workers(uvicorn_config(WORKER_FACTORY, args.host, args.port, workers=args.workers),
                        ready.redis_url.reveal())
        else:
            run_servers([uvicorn_config(create_app(ready), args.host, args.port)])
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    from broker.app import create_app
    from broker.devsetup import dev_environment, emulated_app
    from broker.logs import configure

    configure(readable=True)  # a person reads these; `broker serve` keeps JSON lines for machines
    env, notes, emulate = dev_environment(os.environ, broker_port=args.port, emulator_port=args.emulator_port)
    for note in notes:
        print(f"dev: {note}", file=sys.stderr)
    try:
        settings = load_settings(env).with_overrides(dev_mode=True)
    except ConfigError as exc:
        return fail(exc.problems, "Configuration problems:")
    from broker.devsetup import ensure_signing_key

    taken = _ports_free([("127.0.0.1", args.port, "--port"),
                         *([("127.0.0.1", args.emulator_port, "--emulator-port")] if emulate else [])])
    if taken:
        print(f"dev: {taken}", file=sys.stderr)
        return 2
    for created in ensure_signing_key(settings):
        print(f"dev: created signing key {created} in {settings.keys_dir}", file=sys.stderr)
    with _redis_for(settings) as ready:
        servers = [uvicorn_config(create_app(ready), "127.0.0.1", args.port)]
        if emulate:
            emulator_package = _emulator_package()
            if emulator_package is None:
                return fail([EMULATOR_MISSING], "broker dev needs the TikTok emulator:")
            EmulatorConfig, create_emulator_app = emulator_package
            # The emulated app has the broker's credentials: a key or secret set in the environment is honoured.
            emulator = create_emulator_app(EmulatorConfig(**emulated_app(ready, args.emulator_port)))
            servers.append(uvicorn_config(emulator, "127.0.0.1", args.emulator_port))
        print(f"\n  Open {ready.issuer}/ and click \"Continue with TikTok\".\n", file=sys.stderr)
        run_servers(servers)
    return 0


def cmd_emulator(args: argparse.Namespace) -> int:
    emulator_package = _emulator_package()
    if emulator_package is None:
        return fail([EMULATOR_MISSING], "broker emulator needs the TikTok emulator:")
    EmulatorConfig, create_emulator_app = emulator_package
    config = EmulatorConfig(redirect_uris=tuple(args.redirect_uri), sdk_redirect_uris=tuple(args.sdk_redirect_uri),
                            webhook_url=args.webhook_url,
                            public_url=args.public_url or f"http://{args.host}:{args.port}")
    run_servers([uvicorn_config(create_emulator_app(config), args.host, args.port)])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="broker", description="TikTok identity broker")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve in production (refuses unsafe settings)")
    serve.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a container's broker listens on all interfaces
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=_workers, default=1,
                       help="worker processes sharing the port, each with its own caches (default 1)")
    serve.set_defaults(func=cmd_serve)

    dev = sub.add_parser("dev", help="broker + TikTok emulator + embedded Redis on this machine")
    dev.add_argument("--port", type=int, default=8080)
    dev.add_argument("--emulator-port", type=int, default=DEV_EMULATOR_PORT)
    dev.set_defaults(func=cmd_dev)

    emulator = sub.add_parser("emulator", help="run only the TikTok emulator")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=DEV_EMULATOR_PORT)
    emulator.add_argument("--redirect-uri", action="append", default=[], help="a registered redirect URI")
    emulator.add_argument("--sdk-redirect-uri", action="append", default=[],
                          help="a mobile app's https redirect URI: codes for it are SDK-style (hex challenge)")
    emulator.add_argument("--webhook-url", default=None)
    emulator.add_argument("--public-url", default=None,
                          help="the base URL browsers reach the emulator at, for the avatar links it hands out "
                               "(default: http://HOST:PORT; set it when listening on 0.0.0.0)")
    emulator.set_defaults(func=cmd_emulator)

    keys = sub.add_parser("keys", help="manage JWT signing keys in BROKER_KEYS_DIR")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_sub.add_parser("new", help="create a key (published now, signing after one JWKS max-age)")
    new.add_argument("--alg", choices=["ES256", "EdDSA", "RS256"], default=None)
    new.add_argument("--activate-at", type=parse_instant, default=None, help="ISO-8601 time it starts signing")
    keys_sub.add_parser("list", help="show keys and their state")
    keys_sub.add_parser("prune", help="delete keys that no live token can need")
    keys.set_defaults(func=cmd_keys)

    vault = sub.add_parser("vault", help="manage the keys that encrypt TikTok tokens at rest")
    vault_sub = vault.add_subparsers(dest="vault_command", required=True)
    new_key = vault_sub.add_parser("new-key", help="print a fresh BROKER_VAULT_KEYS entry")
    new_key.add_argument("--kid", default=None)
    vault_sub.add_parser("rotate", help="re-encrypt every stored token with the first key")
    vault.set_defaults(func=cmd_vault)

    clients = sub.add_parser("clients", help="OAuth clients for BROKER_CLIENTS_FILE")
    clients_sub = clients.add_subparsers(dest="clients_command", required=True)
    new_client = clients_sub.add_parser("new", help="print a new client entry (and its secret, once)")
    new_client.add_argument("--client-id", required=True)
    new_client.add_argument("--redirect-uri", action="append", default=[])
    new_client.add_argument("--scope", action="append", default=[])
    new_client.add_argument("--audience", default=None, help="aud of its access tokens (default: its client id)")
    new_client.add_argument("--public", action="store_true", help="no secret (browser or mobile apps, PKCE)")
    new_client.add_argument("--auth-method", choices=["client_secret_basic", "client_secret_post"],
                            default="client_secret_basic")
    new_client.add_argument("--client-name", default=None, help="the name the consent page and account page show")
    new_client.add_argument("--first-party", action="store_true",
                            help="the company's own app: no consent page; may be given the scope `account`")
    new_client.add_argument("--grant-type", action="append", default=[], choices=list(GRANT_TYPES))
    new_client.add_argument("--post-logout-redirect-uri", action="append", default=[])
    new_client.add_argument("--backchannel-logout-uri", default=None)
    new_client.add_argument("--cors-origin", action="append", default=[], help="an origin browsers call from")
    new_client.add_argument("--id-token-alg", choices=["RS256", "ES256"], default=None)
    new_client.add_argument("--require-par", action="store_true", help="only pushed authorization requests")
    new_client.add_argument("--tiktok-redirect-uri", action="append", default=[],
                            help="a native app's redirect URI registered at TikTok (the TikTok SDK exchange)")
    new_client.add_argument("--dpop-bound-access-tokens", action="store_true",
                            help="every token request must carry a DPoP proof (RFC 9449)")
    clients.set_defaults(func=cmd_clients)

    check = sub.add_parser("check-config", help="validate settings, keys, clients and Redis without serving")
    check.set_defaults(func=cmd_check_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from broker.logs import configure

    configure()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        return fail(exc.problems, "Configuration problems:")
    except Terminated:
        return 0
    except KeyboardInterrupt:
        return 130



