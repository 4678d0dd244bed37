"""Operator commands of `broker`: check-config, keys, vault and clients. Thin: they parse, call in, print."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from broker.clock import SystemClock
from broker.config import Settings, load_settings, production_problems
from broker.errors import ConfigError


def fail(problems: Sequence[str], heading: str) -> int:
    print(heading, file=sys.stderr)
    for problem in problems:
        print(f"  - {problem}", file=sys.stderr)
    return 2


def parse_instant(value: str) -> float:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {value!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("give a time zone, e.g. 2026-12-01T00:00:00Z")
    return moment.timestamp()


def _iso(instant: float) -> str:
    return datetime.fromtimestamp(instant, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _variable(problem: str) -> str:
    return problem.partition(":")[0]


def settings_and_problems(*, prepare_keys: bool = False) -> tuple[Settings | None, list[str]]:
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
    if prepare_keys and settings.key_rotation_period > 0:
        _rotate_keys(settings)  # automatic rotation creates the first key itself
    keys_problem = _signing_key_problem(settings)
    if keys_problem:
        problems.append(keys_problem)
    from broker.clients import load_clients

    try:
        load_clients(settings.clients_file, gateway_audience=settings.token_audience)
    except ConfigError as exc:
        problems += exc.problems
    return settings, problems


def _rotate_keys(settings: Settings) -> None:
    from broker.signing.rotation import KeyRotator

    KeyRotator(settings.keys_dir, period=settings.key_rotation_period, alg=settings.signing_alg, clock=SystemClock(),
               jwks_max_age=settings.jwks_max_age, max_token_lifetime=settings.max_token_lifetime,
               also=settings.key_algorithms).run_once()


KEY_USES = {"RS256": "ID tokens", "ES256": "ID tokens of clients that register ES256"}


def _signing_key_problem(settings: Settings) -> str | None:
    """A key must be active for every algorithm the broker signs with (its own, and both ID-token ones)."""
    from broker.signing.keyring import KeyRing

    try:
        ring = KeyRing(settings.keys_dir, clock=SystemClock(), max_token_lifetime=settings.max_token_lifetime,
                       jwks_max_age=settings.jwks_max_age)
    except ConfigError as exc:
        return "; ".join(exc.problems)
    missing = []
    for alg in settings.key_algorithms:
        try:
            ring.signing_key(alg)
        except Exception:  # NoActiveKey: report, do not crash
            use = "access tokens and events" if alg == settings.signing_alg else KEY_USES.get(alg, "")
            missing.append(f"no active {alg} key ({use}): run `broker keys new --alg {alg}`")
    return f"BROKER_KEYS_DIR: {settings.keys_dir}: " + "; ".join(missing) if missing else None


def cmd_check_config(args: argparse.Namespace) -> int:
    settings, problems = settings_and_problems()
    if settings is not None and settings.redis_url:
        problems += asyncio.run(_redis_problems(settings))
    if settings is None or problems:
        return fail(problems, "Configuration problems:")
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
        return fail(exc.problems, "Configuration problems:")
    clock = SystemClock()
    try:
        if args.keys_command == "new":
            created = [create_key(settings.keys_dir, alg=args.alg or settings.signing_alg,
                                  activate_at=args.activate_at, clock=clock, jwks_max_age=settings.jwks_max_age)]
            if args.alg is None:  # also the first key of every other algorithm the broker signs with (ID tokens)
                have = {status.alg for status in list_keys(settings.keys_dir, clock=clock,
                                                           max_token_lifetime=settings.max_token_lifetime,
                                                           jwks_max_age=settings.jwks_max_age)}
                created += [create_key(settings.keys_dir, alg=alg, clock=clock, jwks_max_age=settings.jwks_max_age)
                            for alg in settings.key_algorithms if alg not in have]
            for info in created:
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
        return fail(exc.problems, "Key problems:")
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
        return fail(exc.problems, "Configuration problems:")
    if not settings.redis_url or not settings.vault_keys:
        return fail(["BROKER_REDIS_URL and BROKER_VAULT_KEYS must both be set"], "Cannot rotate:")
    from broker.errors import StoreUnavailable
    from broker.store.vault import VaultError

    try:
        count = asyncio.run(rotate_vault(settings))
    except VaultError as exc:  # a blob sealed with a key no longer listed (or a wrong key under a listed kid)
        return fail([f"BROKER_VAULT_KEYS: a stored token cannot be opened ({exc.log_detail}); keep every old key "
                      "in the list until the rotation has finished"], "Cannot rotate:")
    except StoreUnavailable:
        return fail(["BROKER_REDIS_URL: Redis did not answer"], "Cannot rotate:")
    print(f"re-encrypted {count} entries with key {settings.vault_keys[0].kid}")
    return 0




def cmd_clients(args: argparse.Namespace) -> int:
    """Print a new client's BROKER_CLIENTS_FILE entry; a confidential client's secret is shown here only, once."""
    from broker.clients import new_client_secret, secret_digest

    entry: dict[str, object] = {"client_id": args.client_id, "redirect_uris": args.redirect_uri,
                                "scopes": args.scope or ["openid"]}
    optional: dict[str, object] = {
        "client_name": args.client_name, "audience": args.audience, "first_party": args.first_party or None,
        "grant_types": args.grant_type or None, "post_logout_redirect_uris": args.post_logout_redirect_uri or None,
        "backchannel_logout_uri": args.backchannel_logout_uri, "allowed_cors_origins": args.cors_origin or None,
        "id_token_signed_response_alg": args.id_token_alg,
        "require_pushed_authorization_requests": args.require_par or None,
        "tiktok_redirect_uris": args.tiktok_redirect_uri or None,
        "dpop_bound_access_tokens": args.dpop_bound_access_tokens or None}
    entry.update({name: value for name, value in optional.items() if value is not None})
    secret = None if args.public else new_client_secret()
    if secret is None:
        entry["token_endpoint_auth_method"] = "none"  # noqa: S105 - a method name, not a secret
    else:
        entry["client_secret_sha256"] = secret_digest(secret)
        entry["token_endpoint_auth_method"] = args.auth_method
    from broker.client_entries import parse_entry

    problems: list[str] = []
    parse_entry(0, entry, problems)  # the clients file's own checks: never print an entry it would refuse
    if problems:
        return fail(problems, "This client would be refused:")
    if secret is not None:
        print(f"client_secret (shown once, store it now): {secret}", file=sys.stderr)
    print(json.dumps(entry, indent=2))
    return 0
