"""The `broker` command: thin argument parsing that calls into the application. Nothing else lives here."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from broker.clock import SystemClock
from broker.config import Settings, load_settings, production_problems
from broker.errors import ConfigError

DEV_EMULATOR_PORT = 8081
log = logging.getLogger("broker")


def _fail(problems: Sequence[str], heading: str) -> int:
    print(heading, file=sys.stderr)
    for problem in problems:
        print(f"  - {problem}", file=sys.stderr)
    return 2


def _parse_instant(value: str) -> float:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {value!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("give a time zone, e.g. 2026-12-01T00:00:00Z")
    return moment.timestamp()


def _iso(instant: float) -> str:
    return datetime.fromtimestamp(instant, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


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


async def _serve_all(servers: Sequence[object]) -> None:
    await asyncio.gather(*(server.serve() for server in servers))  # type: ignore[attr-defined]


class _Terminated(Exception):
    """SIGTERM arrived: unwind (stopping an embedded Redis on the way) and exit 0."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated


def _run_servers(servers: Sequence[object]) -> None:
    # uvicorn shuts down gracefully on SIGTERM and then re-raises it to the handler it found; with the default
    # one the process would die on the spot, leaving an embedded redis-server behind. Ours unwinds instead.
    signal.signal(signal.SIGTERM, _on_sigterm)
    asyncio.run(_serve_all(servers))


def _uvicorn_server(app: object, host: str, port: int) -> object:
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="info", server_header=False,  # type: ignore[arg-type]
                            proxy_headers=False, access_log=False)
    return uvicorn.Server(config)


def cmd_serve(args: argparse.Namespace) -> int:
    from broker.app import create_app

    settings, problems = _settings_and_problems()
    if settings is None or problems:
        return _fail(problems, "Refusing to serve with unsafe settings (use `broker dev` on a laptop):")
    with _redis_for(settings) as ready:
        _run_servers([_uvicorn_server(create_app(ready), args.host, args.port)])
    return 0


def _variable(problem: str) -> str:
    return problem.partition(":")[0]


def _settings_and_problems() -> tuple[Settings | None, list[str]]:
    """Settings with every problem `serve` refuses, all at once: bad values, unsafe values, no signing key.

    When some variables do not parse, the others are still checked (read again without the bad ones), so
    that one run names every variable to fix; settings is None only when even that fails.
    """
    problems: list[str] = []
    try:
        settings = load_settings()
    except ConfigError as exc:
        problems = list(exc.problems)
        named = {_variable(problem) for problem in problems}
        try:
            settings = load_settings({k: v for k, v in os.environ.items() if k not in named})
        except ConfigError:
            return None, problems
    named = {_variable(problem) for problem in problems}
    problems += [problem for problem in production_problems(settings) if _variable(problem) not in named]
    keys_problem = _signing_key_problem(settings)
    if keys_problem:
        problems.append(keys_problem)
    return settings, problems


def _signing_key_problem(settings: Settings) -> str | None:
    from broker.signing.keyring import KeyRing

    try:
        KeyRing(settings.keys_dir, clock=SystemClock(), max_token_lifetime=settings.max_token_lifetime,
                jwks_max_age=settings.jwks_max_age).signing_key()
    except ConfigError as exc:
        return "; ".join(exc.problems)
    except Exception as exc:  # NoActiveKey and friends: report, do not crash
        detail = getattr(exc, "log_detail", "") or str(exc)
        return f"BROKER_KEYS_DIR: {detail}"
    return None


def cmd_dev(args: argparse.Namespace) -> int:
    from broker.app import create_app
    from broker.devsetup import dev_environment

    env, notes, emulate = dev_environment(os.environ, broker_port=args.port, emulator_port=args.emulator_port)
    for note in notes:
        print(f"dev: {note}", file=sys.stderr)
    try:
        settings = load_settings(env).with_overrides(dev_mode=True)
    except ConfigError as exc:
        return _fail(exc.problems, "Configuration problems:")
    from broker.devsetup import ensure_signing_key

    created = ensure_signing_key(settings)
    if created:
        print(f"dev: created signing key {created} in {settings.keys_dir}", file=sys.stderr)
    with _redis_for(settings) as ready:
        servers = [_uvicorn_server(create_app(ready), "127.0.0.1", args.port)]
        if emulate:
            from broker.emulator import EmulatorConfig, create_emulator_app

            # The emulated app has the broker's credentials: a key or secret set in the environment is honoured.
            emulator = create_emulator_app(EmulatorConfig(
                client_key=ready.tiktok_client_key, client_secret=ready.tiktok_client_secret.reveal(),
                redirect_uris=(ready.redirect_uri,), public_url=f"http://127.0.0.1:{args.emulator_port}"))
            servers.append(_uvicorn_server(emulator, "127.0.0.1", args.emulator_port))
        print(f"\n  Open {ready.issuer}/ and click \"Continue with TikTok\".\n", file=sys.stderr)
        _run_servers(servers)
    return 0


def cmd_emulator(args: argparse.Namespace) -> int:
    from broker.emulator import EmulatorConfig, create_emulator_app

    config = EmulatorConfig(redirect_uris=tuple(args.redirect_uri), webhook_url=args.webhook_url,
                            public_url=f"http://{args.host}:{args.port}")
    _run_servers([_uvicorn_server(create_emulator_app(config), args.host, args.port)])
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    settings, problems = _settings_and_problems()
    if settings is not None and settings.redis_url:
        problems += asyncio.run(_redis_problems(settings))
    if settings is None or problems:
        return _fail(problems, "Configuration problems:")
    print("Configuration OK" + ("" if settings.redis_url else " (Redis: embedded server)"))
    return 0


async def _redis_problems(settings: Settings) -> list[str]:
    from broker.store.redis import create_redis, ping

    try:
        client = create_redis(settings.redis_url.reveal())
        try:
            await ping(client)
        finally:
            await client.aclose()
    except ConfigError as exc:
        return exc.problems
    except Exception as exc:
        return [f"BROKER_REDIS_URL: Redis did not answer ({type(exc).__name__})"]
    return []


def cmd_keys(args: argparse.Namespace) -> int:
    from broker.signing.keyring import create_key, list_keys, prune_keys

    try:
        settings = load_settings()
    except ConfigError as exc:
        return _fail(exc.problems, "Configuration problems:")
    clock = SystemClock()
    try:
        if args.keys_command == "new":
            info = create_key(settings.keys_dir, alg=args.alg or settings.signing_alg, activate_at=args.activate_at,
                              clock=clock, jwks_max_age=settings.jwks_max_age)
            print(f"created {info.kid} ({info.alg}), signs from {_iso(info.activate_at)}")
        elif args.keys_command == "list":
            for status in list_keys(settings.keys_dir, clock=clock, max_token_lifetime=settings.max_token_lifetime,
                                    jwks_max_age=settings.jwks_max_age):
                until = f", published until {_iso(status.expires_at)}" if status.expires_at else ""
                print(f"{status.kid}  {status.alg:6}  {status.state:8}  signs from {_iso(status.activate_at)}{until}")
        else:
            removed = prune_keys(settings.keys_dir, clock=clock, max_token_lifetime=settings.max_token_lifetime,
                                 jwks_max_age=settings.jwks_max_age)
            print("\n".join(f"removed {kid}" for kid in removed) or "nothing to prune")
    except ConfigError as exc:
        return _fail(exc.problems, "Key problems:")
    return 0


def cmd_vault(args: argparse.Namespace) -> int:
    from broker.store.vault import new_vault_key_entry

    if args.vault_command == "new-key":
        print(new_vault_key_entry(args.kid))
        return 0
    from broker.devsetup import rotate_vault

    try:
        settings = load_settings()
    except ConfigError as exc:
        return _fail(exc.problems, "Configuration problems:")
    if not settings.redis_url or not settings.vault_keys:
        return _fail(["BROKER_REDIS_URL and BROKER_VAULT_KEYS must both be set"], "Cannot rotate:")
    from broker.errors import StoreUnavailable
    from broker.store.vault import VaultError

    try:
        count = asyncio.run(rotate_vault(settings))
    except VaultError as exc:  # a blob sealed with a key no longer listed (or a wrong key under a listed kid)
        return _fail([f"BROKER_VAULT_KEYS: a stored token cannot be opened ({exc.log_detail}); keep every old key "
                      "in the list until the rotation has finished"], "Cannot rotate:")
    except StoreUnavailable:
        return _fail(["BROKER_REDIS_URL: Redis did not answer"], "Cannot rotate:")
    print(f"re-encrypted {count} entries with key {settings.vault_keys[0].kid}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="broker", description="TikTok identity broker")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve in production (refuses unsafe settings)")
    serve.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a container's broker listens on all interfaces
    serve.add_argument("--port", type=int, default=8080)
    serve.set_defaults(func=cmd_serve)

    dev = sub.add_parser("dev", help="broker + TikTok emulator + embedded Redis on this machine")
    dev.add_argument("--port", type=int, default=8080)
    dev.add_argument("--emulator-port", type=int, default=DEV_EMULATOR_PORT)
    dev.set_defaults(func=cmd_dev)

    emulator = sub.add_parser("emulator", help="run only the TikTok emulator")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=DEV_EMULATOR_PORT)
    emulator.add_argument("--redirect-uri", action="append", default=[], help="a registered redirect URI")
    emulator.add_argument("--webhook-url", default=None)
    emulator.set_defaults(func=cmd_emulator)

    keys = sub.add_parser("keys", help="manage JWT signing keys in BROKER_KEYS_DIR")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_sub.add_parser("new", help="create a key (published now, signing after one JWKS max-age)")
    new.add_argument("--alg", choices=["ES256", "EdDSA", "RS256"], default=None)
    new.add_argument("--activate-at", type=_parse_instant, default=None, help="ISO-8601 time it starts signing")
    keys_sub.add_parser("list", help="show keys and their state")
    keys_sub.add_parser("prune", help="delete keys that no live token can need")
    keys.set_defaults(func=cmd_keys)

    vault = sub.add_parser("vault", help="manage the keys that encrypt TikTok tokens at rest")
    vault_sub = vault.add_subparsers(dest="vault_command", required=True)
    new_key = vault_sub.add_parser("new-key", help="print a fresh BROKER_VAULT_KEYS entry")
    new_key.add_argument("--kid", default=None)
    vault_sub.add_parser("rotate", help="re-encrypt every stored token with the first key")
    vault.set_defaults(func=cmd_vault)

    check = sub.add_parser("check-config", help="validate settings, keys and Redis without serving")
    check.set_defaults(func=cmd_check_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        return _fail(exc.problems, "Configuration problems:")
    except _Terminated:
        return 0
    except KeyboardInterrupt:
        return 130


