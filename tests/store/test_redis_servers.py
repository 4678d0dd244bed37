"""Standalone BROKER_REDIS_URL forms against a real server with an ACL user, TLS client certificates and a socket."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator

import pytest

from broker.domain import LoginAttempt, Session
from broker.errors import StoreUnavailable
from broker.store.families import Families
from broker.store.keys import KeySpace
from broker.store.records import Records
from broker.store.redis import create_redis, ping
from broker.store.vault import Vault
from tests.conftest import vault_key
from tests.support.redis_topologies import USER, StandaloneServer, requires_redis_server

pytestmark = requires_redis_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneServer]:
    with StandaloneServer(tmp_path_factory.mktemp("standalone")) as running:
        yield running


def urls(server: StandaloneServer) -> dict[str, str]:
    assert server.tls is not None
    query = "&".join(f"{name}={value}" for name, value in server.tls.client_options().items())
    login = server.credentials()
    return {
        "redis": f"redis://{login}127.0.0.1:{server.server.port}/1",
        "rediss": f"rediss://{login}127.0.0.1:{server.server.tls_port}/2?{query}",
        "unix": f"unix://{login}{server.socket}?db=3",
    }


@pytest.mark.parametrize(("form", "db"), [("redis", 1), ("rediss", 2), ("unix", 3)])
async def test_each_form_logs_in_as_the_acl_user_and_uses_its_database(server: StandaloneServer, form: str,
                                                                        db: int) -> None:
    client = create_redis(urls(server)[form])
    try:
        value = uuid.uuid4().hex
        await client.set(f"form:{form}", value)
        assert await client.acl_whoami() == USER  # type: ignore[union-attr]
    finally:
        await client.aclose()
    with server.server.client(db=db) as direct:
        assert direct.get(f"form:{form}") == value


@pytest.mark.parametrize("change", ["no client certificate", "untrusted server", "wrong password", "unknown user",
                                    "plain text to the TLS port"])
async def test_a_client_the_server_refuses_gets_store_unavailable(server: StandaloneServer, change: str) -> None:
    assert server.tls is not None
    tls, login = urls(server)["rediss"], server.credentials()
    url = {
        "no client certificate": f"rediss://{login}127.0.0.1:{server.server.tls_port}/0?ssl_ca_certs={server.tls.ca}",
        "untrusted server": tls.replace(f"ssl_ca_certs={server.tls.ca}", f"ssl_ca_certs={server.tls.client_cert}"),
        "wrong password": tls.replace(server.credentials(), server.credentials(password="not-it")),
        "unknown user": tls.replace(server.credentials(), server.credentials(user="nobody")),
        "plain text to the TLS port": f"redis://{login}127.0.0.1:{server.server.tls_port}/0",
    }[change]
    client = create_redis(url)
    try:
        with pytest.raises(StoreUnavailable):
            await ping(client)
    finally:
        await client.aclose()


async def test_a_master_refusing_writes_means_unavailable_for_commands_scripts_and_transactions(
        server: StandaloneServer) -> None:
    """What a former master with min-replicas-to-write answers after a failover took its replica away."""
    client = create_redis(urls(server)["redis"])
    keys, vault = KeySpace("broker:"), Vault([vault_key()])
    records, families = Records(client, keys, vault), Families(client, keys, vault)
    family = Session(sid="f" * 32, user_id="u" * 22, created_at=1.0, last_seen=1.0, expires_at=4e9,
                     idle_expires_at=4e9, scopes=(), kind="refresh")
    await families.create(family, "current-hash", now=1.0)
    attempt = LoginAttempt(code_verifier="v", nonce="n", return_to="/", binding_hash="b", created_at=1.0, scopes=())
    writes: dict[str, Callable[[], Awaitable[object]]] = {
        "one command": lambda: records.put_login_attempt("h", attempt, 60),
        "a MULTI": lambda: families.deny_jti(family.user_id, "jti", 4e9),
        "a MULTI with a read after the write": lambda: records.claim_user_id("open-id", "candidate"),
        "a script": lambda: families.rotate(family.user_id, family.sid, "current-hash", "brt1.next", "next-hash",
                                            jti="j", client_id="", now=2.0, grace=0, idle_ttl=60),
    }
    with server.server.client() as direct:
        direct.config_set("min-replicas-to-write", 1)
    try:
        for step, write in writes.items():
            with pytest.raises(StoreUnavailable) as refused:
                await write()
            assert refused.value.log_detail == "redis: NOREPLICAS", step
        # Reads still answer, from a script too (a touch inside the touch interval writes nothing).
        found, _ = await records.touch_session(family.user_id, family.sid, 2.0, idle_ttl=60, touch_interval=60)
        assert found is not None and found.sid == family.sid
    finally:
        with server.server.client() as direct:
            direct.config_set("min-replicas-to-write", 0)
        await client.aclose()
