"""`broker serve` as deployed: uvicorn leaves the client address alone, BROKER_TRUSTED_PROXIES alone decides."""

from __future__ import annotations

from pathlib import Path

import httpx

from broker.store.embedded import free_port
from tests.cli import production_env, running_broker
from tests.conftest import vault_entry, vault_key


def revoke(issuer: str, forwarded_for: str) -> int:
    response = httpx.post(f"{issuer}/oauth/revoke", data={"token": "unknown"},
                          headers={"X-Forwarded-For": forwarded_for}, timeout=10)
    return response.status_code


def test_uvicorn_never_rewrites_the_peer_and_our_setting_decides(redis_url: str, keys_dir: Path,
                                                                 tmp_path: Path) -> None:
    for trusted in ("", "127.0.0.1"):
        port = free_port()
        issuer = f"http://127.0.0.1:{port}"
        env = production_env(redis_url, keys_dir, vault_entry(vault_key()), ISSUER=issuer,
                             RATE_LIMIT_OAUTH="1/1m", TRUSTED_PROXIES=trusted, REDIS_PREFIX=f"p{port}:")
        env["FORWARDED_ALLOW_IPS"] = "*"  # what would make uvicorn believe X-Forwarded-For, were it listening
        with running_broker("serve", "--host", "127.0.0.1", "--port", str(port), env=env, cwd=tmp_path) as broker:
            broker.wait_for(f"{issuer}/readyz")
            if not trusted:
                # The peer is 127.0.0.1 whatever the header says: one allowance, whichever address is claimed.
                assert [revoke(issuer, f"203.0.113.{n}") for n in (1, 2)] == [200, 429]
            else:
                assert [revoke(issuer, "203.0.113.3") for _ in range(2)] == [200, 429]
                assert revoke(issuer, "203.0.113.4") == 200  # another client behind the trusted proxy
