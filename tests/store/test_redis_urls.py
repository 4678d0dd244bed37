"""BROKER_REDIS_URL forms and the key layout's hash tags (every key of one user in one Cluster slot)."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.crc import key_slot

from broker.errors import ConfigError
from broker.store.keys import KeySpace
from broker.store.redis import create_redis, parse_redis_url


@pytest.fixture
def pem(tmp_path: Path) -> dict[str, str]:
    """Paths of files that exist (the parser checks that TLS files are there; their content is not read)."""
    files = {}
    for name in ("ca", "cert", "key"):
        (tmp_path / f"{name}.pem").write_text("-")
        files[name] = str(tmp_path / f"{name}.pem")
    return files


def test_standalone_forms() -> None:
    plain = parse_redis_url("redis://user:p%40ss@10.0.0.5:6379/2")
    assert (plain.kind, plain.hosts, plain.db, plain.username, plain.password, plain.tls) == (
        "standalone", (("10.0.0.5", 6379),), 2, "user", "p@ss", False)
    assert parse_redis_url("redis://redis.internal").hosts == (("redis.internal", 6379),)
    assert parse_redis_url("redis://[::1]:6380").hosts == (("::1", 6380),)
    socket = parse_redis_url("unix://:pw@/run/redis/redis.sock?db=3")
    assert (socket.socket_path, socket.db, socket.password, socket.hosts) == ("/run/redis/redis.sock", 3, "pw", ())
    assert "p@ss" not in repr(plain) and "pw" not in repr(socket)


def test_tls_options(pem: dict[str, str]) -> None:
    url = (f"rediss://:pw@redis.example.com:6380/0?ssl_ca_certs={pem['ca']}&ssl_certfile={pem['cert']}"
           f"&ssl_keyfile={pem['key']}&ssl_cert_reqs=required&ssl_check_hostname=false")
    tls = parse_redis_url(url)
    assert tls.tls and tls.tls_options == {"ssl_ca_certs": pem["ca"], "ssl_certfile": pem["cert"],
                                           "ssl_keyfile": pem["key"], "ssl_cert_reqs": "required",
                                           "ssl_check_hostname": False}
    assert "pw" not in repr(tls)


def test_sentinel_with_several_hosts_service_db_and_own_credentials() -> None:
    target = parse_redis_url("redis+sentinel://app:secret@s1:26379,s2:26380,[::1]:26381/mymaster/3")
    assert target.kind == "sentinel"
    assert target.hosts == (("s1", 26379), ("s2", 26380), ("::1", 26381))
    assert (target.service_name, target.db, target.password) == ("mymaster", 3, "secret")
    # By default the Sentinels are asked with the same credentials as the data nodes...
    assert (target.sentinel_username, target.sentinel_password) == ("app", "secret")
    # ...unless the URL says otherwise; an empty value means "no credentials" for the Sentinels.
    own = parse_redis_url("redis+sentinel://app:secret@s1:26379/m?sentinel_username=watcher&sentinel_password=w%26x")
    assert (own.sentinel_username, own.sentinel_password, own.password) == ("watcher", "w&x", "secret")
    none = parse_redis_url("redis+sentinel://app:secret@s1:26379/m?sentinel_username=&sentinel_password=")
    assert (none.sentinel_username, none.sentinel_password) == (None, None)
    assert "secret" not in repr(target) and "w&x" not in repr(own)
    assert parse_redis_url("rediss+sentinel://s1:26379/m").tls


def test_cluster_with_credentials() -> None:
    target = parse_redis_url("rediss+cluster://admin:pw@n1:7000,n2:7001")
    assert (target.kind, target.hosts, target.username, target.password, target.tls) == (
        "cluster", (("n1", 7000), ("n2", 7001)), "admin", "pw", True)


@pytest.mark.parametrize(("url", "problem"), [
    ("http://x:1", "unsupported scheme"),
    ("redis+sentinel://s1:26379", "must name the service"),
    ("redis+cluster://n1", "host:port"),
    ("redis+cluster://n1:7000/0", "no database"),
    ("redis+sentinel://s1:26379/m/x", "database must be a number"),
    ("redis://", "needs a host"),
    ("redis://a:1,b:2", "several hosts"),
    ("redis://h:1/0?ssl_ca_certs=/ca.pem", "TLS options need a rediss scheme"),
    ("rediss://h:1/0?ssl_cert_file=/c.pem", "unknown option 'ssl_cert_file'"),
    ("rediss://h:1/0?ssl_ca_certs=/nowhere/ca.pem", "no such file"),
    ("rediss://h:1/0?ssl_cert_reqs=maybe", "ssl_cert_reqs must be one of"),
    ("redis://h:1/0?sentinel_password=x", "unknown option 'sentinel_password'"),
])
def test_bad_urls_name_the_variable_and_the_problem(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match="BROKER_REDIS_URL") as raised:
        parse_redis_url(url)
    assert any(problem in line for line in raised.value.problems), raised.value.problems


def test_every_problem_is_reported_at_once(pem: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_redis_url(f"rediss+cluster://n1:7000,n2?ssl_certfile={pem['cert']}&ssl_ca_certs=/nowhere&db=1")
    problems = "\n".join(raised.value.problems)
    for expected in ("unknown option 'db'", "no such file '/nowhere'", "needs both ssl_certfile and ssl_keyfile",
                     "host:port, got 'n2'"):
        assert expected in problems
    assert len(raised.value.problems) == 4


async def test_every_form_builds_a_client_without_connecting() -> None:
    for url in ("redis://127.0.0.1:1/0", "redis+sentinel://127.0.0.1:1/m", "unix:///tmp/none.sock",
                "redis+cluster://127.0.0.1:1"):
        client = create_redis(url)
        await client.aclose()


def test_all_keys_of_one_user_share_a_slot() -> None:
    keys = KeySpace("broker:")
    user = "Abc123_-xyzXYZ0987654"
    names = [keys.user(user), keys.tiktok_tokens(user), keys.session(user, "s" * 32), keys.user_sessions(user),
             keys.refresh_used(user, "s"), keys.refresh_grace(user, "h"), keys.denied_jti(user, "j"),
             keys.short_lived(user), keys.authorization_code(user, "c"), keys.spent_code(user, "c")]
    assert len({key_slot(name.encode()) for name in names}) == 1
    other = [keys.user("another-user-id-000000"), keys.session("another-user-id-000000", "s")]
    assert len({key_slot(name.encode()) for name in other}) == 1


def test_shared_queues_keep_their_parts_in_one_slot() -> None:
    keys = KeySpace("broker:")
    revocations = [keys.revoke_queue(), keys.revoke_item("a"), keys.revoke_item("b")]
    assert len({key_slot(name.encode()) for name in revocations}) == 1
    events = [keys.events_stream(), *(keys.event_outbox(part) for part in ("deliveries", "due", "stats"))]
    assert len({key_slot(name.encode()) for name in events}) == 1
