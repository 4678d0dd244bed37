"""Local-machine conveniences for `broker dev` and operators: safe defaults, a first key, vault rotation."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from broker.clock import SystemClock
from broker.config import PREFIX, Settings
from broker.store.vault import new_vault_key_entry

DEV_DATA_DIR = ".broker-dev"
# The emulator's built-in app credentials: they only ever open the local emulator.
EMULATOR_CLIENT_KEY = "emulator-client-key"
EMULATOR_CLIENT_SECRET = "emulator-client-secret"  # noqa: S105 - a public test credential, not a secret


def _dev_vault_key(data_dir: Path) -> str:
    """A vault key kept in the dev data folder, so a restart can still read the tokens it stored."""
    path = data_dir / "vault-key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    entry = new_vault_key_entry("dev")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(entry + "\n")
    return entry


def emulated_app(settings: Settings, emulator_port: int) -> dict[str, object]:
    """How `broker dev` registers the broker at its emulator: the broker's credentials and callback, and its
    webhook endpoint, so that deauthorizations and posting events reach the broker as they would from TikTok."""
    return {"client_key": settings.tiktok_client_key, "client_secret": settings.tiktok_client_secret.reveal(),
            "redirect_uris": (settings.redirect_uri,), "webhook_url": f"{settings.issuer}/webhooks/tiktok",
            "public_url": f"http://127.0.0.1:{emulator_port}"}


def dev_environment(environ: Mapping[str, str], *, broker_port: int,
                    emulator_port: int) -> tuple[dict[str, str], list[str], bool]:
    """The environment `broker dev` runs with: what is set is kept, what is missing gets a local default.

    Returns the environment, one note per filled default (never a secret's value), and whether the TikTok
    emulator should run (only when TikTok's URLs were not set, i.e. the broker would talk to it).
    """
    env = dict(environ)
    notes: list[str] = []
    emulator = f"http://127.0.0.1:{emulator_port}"
    data_dir = Path(env.get(PREFIX + "DATA_DIR") or DEV_DATA_DIR)
    emulate = not env.get(PREFIX + "TIKTOK_API_URL") and not env.get(PREFIX + "TIKTOK_AUTHORIZE_URL")
    defaults: list[tuple[str, str, str]] = [
        ("ISSUER", f"http://127.0.0.1:{broker_port}", ""),
        ("DATA_DIR", str(data_dir), ""),
        ("TIKTOK_SCOPES", "user.info.basic,user.info.profile,user.info.stats", ""),
    ]
    if emulate:
        defaults += [
            ("TIKTOK_AUTHORIZE_URL", f"{emulator}/v2/auth/authorize/", "the local TikTok emulator"),
            ("TIKTOK_API_URL", emulator, "the local TikTok emulator"),
            ("TIKTOK_CLIENT_KEY", EMULATOR_CLIENT_KEY, "the emulator's app"),
            ("TIKTOK_CLIENT_SECRET", EMULATOR_CLIENT_SECRET, "the emulator's app (value hidden)"),
        ]
    for name, value, why in defaults:
        if not env.get(PREFIX + name):
            env[PREFIX + name] = value
            shown = why if "hidden" in why else f"{value}" + (f" ({why})" if why else "")
            notes.append(f"{PREFIX}{name} not set, using {shown}")
    if not env.get(PREFIX + "VAULT_KEYS"):
        env[PREFIX + "VAULT_KEYS"] = _dev_vault_key(data_dir)
        notes.append(f"{PREFIX}VAULT_KEYS not set, using a development key kept in {data_dir / 'vault-key'}")
    if not env.get(PREFIX + "REDIS_URL"):
        notes.append(f"{PREFIX}REDIS_URL not set, starting an embedded Redis in {data_dir / 'redis'}")
    return env, notes, emulate


def ensure_signing_key(settings: Settings) -> list[str]:
    """Create an immediately active key for each algorithm the broker signs with that has none; the kids made."""
    from broker.signing.keyring import KeyRing, create_key

    clock = SystemClock()
    settings.keys_dir.mkdir(parents=True, exist_ok=True)
    ring = KeyRing(settings.keys_dir, clock=clock, max_token_lifetime=settings.max_token_lifetime,
                   jwks_max_age=settings.jwks_max_age)
    created = []
    for alg in settings.key_algorithms:
        try:
            ring.signing_key(alg)
        except Exception:  # no active key of this algorithm yet
            created.append(create_key(settings.keys_dir, alg=alg, activate_at=clock.now(), clock=clock,
                                      jwks_max_age=settings.jwks_max_age).kid)
    return created


async def rotate_vault(settings: Settings) -> int:
    """Re-encrypt every sealed TikTok token with the first vault key."""
    from broker.store.keys import KeySpace
    from broker.store.records import Records
    from broker.store.redis import create_redis
    from broker.store.vault import Vault

    client = create_redis(settings.redis_url.reveal())
    try:
        records = Records(client, KeySpace(settings.redis_prefix), Vault(settings.vault_keys))
        return await records.reseal_all()
    finally:
        await client.aclose()
