"""Redis clients from a URL (standalone, TLS, Sentinel, Cluster) and the translation of Redis failures."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, TypeAlias, cast
from urllib.parse import parse_qs, unquote, urlsplit

from redis import exceptions as redis_exceptions
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import WatchError

__all__ = ["RedisClient", "WatchError", "create_redis", "parse_redis_url", "ping", "translated_errors"]

from broker.errors import ConfigError, StoreUnavailable

RedisClient: TypeAlias = "Redis | RedisCluster"

STANDALONE_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")

# Fail closed fast: a request that needs Redis should answer 503 within a couple of seconds, not hang.
CONNECT_TIMEOUT = 1.0
COMMAND_TIMEOUT = 2.0

# Failures that mean "the store is not reachable right now" (answer 503 and let the client retry).
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    redis_exceptions.ConnectionError,
    redis_exceptions.TimeoutError,
    redis_exceptions.BusyLoadingError,
    redis_exceptions.ClusterDownError,
    redis_exceptions.TryAgainError,
    redis_exceptions.ReadOnlyError,
    redis_exceptions.MasterNotFoundError if hasattr(redis_exceptions, "MasterNotFoundError")
    else redis_exceptions.ConnectionError,
    OSError,
    TimeoutError,
)


@dataclass(frozen=True)
class RedisTarget:
    """A parsed BROKER_REDIS_URL; the password never appears in its repr."""

    kind: str  # standalone | sentinel | cluster
    url: str = field(repr=False)
    hosts: tuple[tuple[str, int], ...] = ()
    service_name: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    options: dict[str, str] = field(default_factory=dict)


def parse_redis_url(url: str) -> RedisTarget:
    """Understand every supported form; raise ConfigError naming BROKER_REDIS_URL on a bad one.

    redis://[user:pass@]host:port/db, rediss://... (TLS), unix:///path/to.sock,
    redis+sentinel://[user:pass@]host:port[,host:port...]/service-name[/db] (rediss+sentinel for TLS),
    redis+cluster://[user:pass@]host:port[,host:port...] (rediss+cluster for TLS).
    TLS options ride in the query string: ssl_ca_certs, ssl_certfile, ssl_keyfile, ssl_cert_reqs.
    """
    problem = "BROKER_REDIS_URL: "
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if scheme in STANDALONE_SCHEMES:
        if scheme != "unix" and not parts.hostname:
            raise ConfigError([problem + "needs a host, e.g. redis://127.0.0.1:6379/0"])
        return RedisTarget("standalone", url, tls=scheme == "rediss", username=username, password=password,
                           options=options)
    if scheme not in SENTINEL_SCHEMES + CLUSTER_SCHEMES:
        raise ConfigError([problem + f"unsupported scheme {scheme!r} (use redis, rediss, unix, "
                           "redis+sentinel or redis+cluster)"])
    hosts = _parse_hosts(parts.netloc.rpartition("@")[2], problem)
    segments = [s for s in parts.path.split("/") if s]
    if scheme in SENTINEL_SCHEMES:
        if not segments:
            raise ConfigError([problem + "a Sentinel URL must name the service: redis+sentinel://h:26379/mymaster"])
        db = _parse_db(segments[1] if len(segments) > 1 else "0", problem)
        return RedisTarget("sentinel", url, hosts, segments[0], db, username, password,
                           scheme.startswith("rediss"), options)
    return RedisTarget("cluster", url, hosts, "", 0, username, password, scheme.startswith("rediss"), options)


def _parse_hosts(netloc: str, problem: str) -> tuple[tuple[str, int], ...]:
    hosts: list[tuple[str, int]] = []
    for item in netloc.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError([problem + f"each host needs host:port, got {item!r}"])
        hosts.append((host.strip("[]"), int(port)))
    return tuple(hosts)


def _parse_db(value: str, problem: str) -> int:
    if not value.isdigit():
        raise ConfigError([problem + f"database must be a number, got {value!r}"])
    return int(value)


def _tls_kwargs(target: RedisTarget) -> dict[str, Any]:
    if not target.tls:
        return {}
    kwargs: dict[str, Any] = {"ssl": True}
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs"):
        if name in target.options:
            kwargs[name] = target.options[name]
    return kwargs


def _common_kwargs() -> dict[str, Any]:
    return {
        "decode_responses": True,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": COMMAND_TIMEOUT,
        "health_check_interval": 15,
        # One quick retry covers a connection that Redis closed while idle; more would only delay the 503.
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
    }


def create_redis(url: str, **overrides: Any) -> RedisClient:
    """Build (but do not connect) a client for any supported URL; `overrides` replace connection options."""
    target = parse_redis_url(url)
    kwargs = {**_common_kwargs(), **overrides}
    if target.kind == "standalone":
        return Redis.from_url(url.split("?")[0] if target.tls else url, **kwargs, **_tls_kwargs(target))
    auth: dict[str, Any] = {"username": target.username, "password": target.password}
    if target.kind == "sentinel":
        sentinel_kwargs = {**auth, **_tls_kwargs(target), "socket_timeout": COMMAND_TIMEOUT}
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(target.hosts), sentinel_kwargs=sentinel_kwargs, **kwargs, **_tls_kwargs(target), **auth)
        return cast(Redis, sentinel.master_for(target.service_name, db=target.db))
    from redis.asyncio.cluster import ClusterNode

    nodes = [ClusterNode(host, port) for host, port in target.hosts]
    return RedisCluster(startup_nodes=nodes, **kwargs, **_tls_kwargs(target), **auth)


@contextlib.asynccontextmanager
async def translated_errors() -> AsyncIterator[None]:
    """Turn "Redis is not reachable" into StoreUnavailable (503, Retry-After) at the store boundary."""
    try:
        yield
    except UNAVAILABLE_ERRORS as exc:
        raise StoreUnavailable(log_detail=f"redis: {type(exc).__name__}") from exc


async def ping(client: RedisClient) -> None:
    async with translated_errors():
        await cast(Any, client).ping()
