"""BROKER_REDIS_URL forms and the key layout's hash tags (every key of one user in one Cluster slot)."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from broker.errors import ConfigError
from broker.store.keys import KeySpace
from broker.store.redis import create_redis, parse_redis_url


def test_standalone_and_tls() -> None:
    plain = parse_redis_url("redis://user:p%40ss@10.0.0.5:6379/2")
    assert (plain.kind, plain.username, plain.password, plain.tls) == ("standalone", "user", "p@ss", False)
    tls = parse_redis_url("rediss://:pw@redis.example.com:6380/0?ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem")
    assert tls.tls and tls.options == {"ssl_ca_certs": "/ca.pem", "ssl_certfile": "/c.pem"}
    assert "pw" not in repr(tls) and "p@ss" not in repr(plain)


def test_sentinel_with_several_hosts_service_and_db() -> None:
    target = parse_redis_url("redis+sentinel://:secret@s1:26379,s2:26380,[::1]:26381/mymaster/3")
    assert target.kind == "sentinel"
    assert target.hosts == (("s1", 26379), ("s2", 26380), ("::1", 26381))
    assert (target.service_name, target.db, target.password) == ("mymaster", 3, "secret")
    assert parse_redis_url("rediss+sentinel://s1:26379/m").tls


def test_cluster_with_credentials() -> None:
    target = parse_redis_url("rediss+cluster://admin:pw@n1:7000,n2:7001")
    assert (target.kind, target.hosts, target.username, target.password, target.tls) == (
        "cluster", (("n1", 7000), ("n2", 7001)), "admin", "pw", True)


@pytest.mark.parametrize("url", ["http://x:1", "redis+sentinel://s1:26379", "redis+cluster://n1",
                                 "redis+sentinel://s1:26379/m/x", "redis://"])
def test_bad_urls_name_the_variable(url: str) -> None:
    with pytest.raises(ConfigError, match="BROKER_REDIS_URL"):
        parse_redis_url(url)


async def test_every_form_builds_a_client_without_connecting() -> None:
    for url in ("redis://127.0.0.1:1/0", "redis+sentinel://127.0.0.1:1/m", "unix:///tmp/none.sock"):
        client = create_redis(url)
        await client.aclose()


def test_all_keys_of_one_user_share_a_slot() -> None:
    keys = KeySpace("broker:")
    user = "Abc123_-xyzXYZ0987654"
    names = [keys.user(user), keys.tiktok_tokens(user), keys.session(user, "s" * 32), keys.user_sessions(user)]
    assert len({key_slot(name.encode()) for name in names}) == 1
    other = [keys.user("another-user-id-000000"), keys.session("another-user-id-000000", "s")]
    assert len({key_slot(name.encode()) for name in other}) == 1
