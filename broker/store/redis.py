"""Redis clients from a URL (standalone, TLS, Sentinel, Cluster) and the translation of Redis failures."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any, TypeAlias, cast

from redis import exceptions as redis_exceptions
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import WatchError

from broker.errors import StoreUnavailable
from broker.store.redis_sentinel import CurrentMasterPool, follow_failovers
from broker.store.redis_url import RedisTarget, parse_redis_url

__all__ = ["RedisClient", "RedisTarget", "WatchError", "cluster_primaries", "create_redis", "follow_failovers",
           "node_client", "parse_redis_url", "ping", "reply_parser", "translated_errors"]

RedisClient: TypeAlias = "Redis | RedisCluster"

# Fail closed fast: a request that needs Redis answers 503 within a couple of seconds, not when the kernel gives
# up. DEADLINE bounds each step at the store boundary whole (connecting, retrying, a Sentinel's lookup, every
# command of a pipeline): a frozen Redis (SIGSTOP, a dead network path) accepts connections and answers nothing.
DEADLINE = 1.5
CONNECT_TIMEOUT = 1.0
COMMAND_TIMEOUT = DEADLINE

# Failures that mean "the store is not reachable right now" (answer 503 and let the client retry).
# MasterNotFoundError and an AuthenticationError are ConnectionErrors; a replica's READONLY reply reaches us
# only when a failover is under way, and redis-py's Sentinel connections turn it into a ConnectionError too.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    redis_exceptions.ConnectionError,
    redis_exceptions.TimeoutError,
    redis_exceptions.BusyLoadingError,
    redis_exceptions.ClusterDownError,
    redis_exceptions.TryAgainError,
    redis_exceptions.ReadOnlyError,
    redis_exceptions.MasterDownError,
    redis_exceptions.SlotNotCoveredError,
    OSError,
    TimeoutError,
)
# The same, as replies that redis-py has no class for (or that reach us inside a script or a MULTI). NOREPLICAS:
# a master with min-replicas-to-write that has lost its replicas (a former master, after a failover) refuses
# writes. A pipeline names the failed command first: "Command # 1 (SET ...) of pipeline caused error: ...".
UNAVAILABLE_REPLY = re.compile(r"^(?:Command # \d+ \(.*\) of pipeline caused error: \(?'?)?"
                               r"(NOREPLICAS|LOADING|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|READONLY)\b", re.DOTALL)


def reply_parser() -> str:
    """How redis-py parses Redis's replies here: "hiredis" (the C parser, a dependency of the server) or "python"."""
    from redis.utils import HIREDIS_AVAILABLE

    return "hiredis" if HIREDIS_AVAILABLE else "python"


def _tls_kwargs(target: RedisTarget) -> dict[str, Any]:
    return {"ssl": True, **target.tls_options} if target.tls else {}


def _common_kwargs() -> dict[str, Any]:
    return {
        "decode_responses": True,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": COMMAND_TIMEOUT,
        "health_check_interval": 15,
        # One quick retry covers a connection that Redis closed while idle (or a Sentinel connection to a master
        # that was just demoted); more would only delay the 503.
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
    }


def create_redis(url: str, **overrides: Any) -> RedisClient:
    """Build (but do not connect) a client for any supported URL; `overrides` replace connection options (those
    of the data connections: the Sentinels are always asked with the defaults). Credentials and TLS settings
    apply to every connection the client opens: to the Sentinels, to whichever node is master, to every Cluster
    node it discovers later (a replica promoted by a failover included)."""
    target = parse_redis_url(url)
    kwargs = {**_common_kwargs(), **_tls_kwargs(target), "username": target.username, "password": target.password,
              **overrides}
    if target.kind == "standalone":
        if target.socket_path:
            return Redis(unix_socket_path=target.socket_path, db=target.db, **kwargs)
        host, port = target.hosts[0]
        return Redis(host=host, port=port, db=target.db, **kwargs)
    if target.kind == "sentinel":
        sentinel_kwargs = {**_common_kwargs(), **_tls_kwargs(target), "username": target.sentinel_username,
                           "password": target.sentinel_password}
        del sentinel_kwargs["decode_responses"]  # redis-py parses the Sentinels' replies itself
        sentinel = Sentinel(list(target.hosts), sentinel_kwargs=sentinel_kwargs,
                            **kwargs)
        return cast(Redis, sentinel.master_for(target.service_name, db=target.db,
                                               connection_pool_class=CurrentMasterPool))
    nodes = [ClusterNode(host, port) for host, port in target.hosts]
    return RedisCluster(startup_nodes=nodes, **kwargs)


def node_client(url: str, host: str, port: int, **overrides: Any) -> Redis:
    """A client for one node of the Cluster that BROKER_REDIS_URL names (found by asking the Cluster), with the
    URL's credentials and TLS settings."""
    target = parse_redis_url(url)
    kwargs = {**_common_kwargs(), **_tls_kwargs(target), "username": target.username, "password": target.password,
              **overrides}
    return Redis(host=host, port=port, **kwargs)


async def cluster_primaries(client: RedisClient) -> frozenset[tuple[str, int]]:
    """The addresses of the nodes that serve the Cluster's slots right now (one CLUSTER SLOTS)."""
    async with translated_errors():
        slots = await cast(Any, client).execute_command("CLUSTER SLOTS")
    return frozenset((str(served["primary"][0]), int(served["primary"][1])) for served in slots.values())


@contextlib.asynccontextmanager
async def translated_errors(deadline: float | None = DEADLINE) -> AsyncIterator[None]:
    """Turn "Redis is not reachable" into StoreUnavailable (503, Retry-After) at the store boundary, and a step
    that takes longer than `deadline` seconds (None: no bound, for maintenance that walks the keyspace) into
    the same."""
    try:
        async with asyncio.timeout(deadline):
            yield
    except UNAVAILABLE_ERRORS as exc:
        raise StoreUnavailable(log_detail=f"redis: {type(exc).__name__}") from exc
    except redis_exceptions.ResponseError as exc:
        reply = UNAVAILABLE_REPLY.match(str(exc))
        if reply:
            raise StoreUnavailable(log_detail=f"redis: {reply.group(1)}") from exc
        raise
    except redis_exceptions.RedisClusterException as exc:
        # The Cluster client wraps "no node reachable" (or "none would let us in") at start-up; its other
        # complaints (a command across slots) are bugs and must stay loud.
        if isinstance(exc.__cause__, UNAVAILABLE_ERRORS):
            raise StoreUnavailable(log_detail=f"redis: cluster, {type(exc.__cause__).__name__}") from exc
        raise


async def ping(client: RedisClient) -> None:
    async with translated_errors():
        await cast(Any, client).ping()
