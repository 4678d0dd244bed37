"""Real Redis topologies on loopback for the tests: a Cluster, a Sentinel setup, a standalone server.

Every server is Debian's redis-server started from a config file written here, in its own folder:
- the default user is off; one ACL user with a password (USER, `password`) can do everything,
- with `tls`, a CA, a server certificate and a client certificate are made with `cryptography`, and servers
  demand a client certificate (tls-auth-clients yes) on their TLS port,
- replication, the Cluster bus and the Sentinels' own links use TLS and the ACL user as well.

Use them as context managers (`with ClusterTopology(path) as cluster:`), typically in a module-scoped fixture.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote, urlencode

import redis
from redis.crc import key_slot

from broker.store.embedded import EmbeddedRedis
from tests.support.redis_process import (
    START_TIMEOUT,
    USER,
    RedisProcess,
    distinct_port,
    requires_redis_server,
    wait_for,
)
from tests.support.tls_files import TlsFiles, make_tls_files

__all__ = ["USER", "WATCHER", "ClusterTopology", "SentinelTopology", "SlotCheckingRedis", "StandaloneServer",
           "requires_redis_server", "wait_for"]

WATCHER = "watcher"  # a user that only the Sentinels know
SERVICE = "broker-master"


def _url_options(tls: TlsFiles | None, query: dict[str, str] | None) -> str:
    options = {**(tls.client_options() if tls else {}), **(query or {})}
    return f"?{urlencode(options)}" if options else ""


class _Topology:
    """Shared parts: a folder, a password, optional TLS material, processes to stop at the end."""

    def __init__(self, directory: Path, *, tls: bool) -> None:
        self.directory = directory
        self.password = secrets.token_urlsafe(18)
        self.tls = make_tls_files(directory / "tls") if tls else None
        self.processes: list[RedisProcess] = []

    def _process(self, name: str, **options: Any) -> RedisProcess:
        process = RedisProcess(self.directory / name, self.password, tls=self.tls, **options)
        self.processes.append(process)
        return process

    def credentials(self, user: str = USER, password: str | None = None) -> str:
        return f"{quote(user)}:{quote(self.password if password is None else password)}@"

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        for process in self.processes:
            process.stop()

    def __enter__(self) -> Self:
        """Started, or stopped again if the start failed half-way."""
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# Redis Cluster.

class ClusterTopology(_Topology):
    """Three masters (slots split evenly), each with one replica. Every node listens on a plain port and, with
    `tls`, a TLS port too; a Cluster answers each client with the ports of its own kind (Redis 7)."""

    def __init__(self, directory: Path, *, tls: bool = True, replicas: bool = True) -> None:
        super().__init__(directory, tls=tls)
        self.masters = [self._node(f"master-{index}") for index in range(3)]
        self.replicas = [self._node(f"replica-{index}") for index in range(3)] if replicas else []

    def _node(self, name: str) -> RedisProcess:
        return self._process(name, cluster=True, settings=["cluster-node-timeout 3000",
                                                           *(["tls-cluster yes"] if self.tls else [])])

    @property
    def nodes(self) -> list[RedisProcess]:
        return [*self.masters, *self.replicas]

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_ready()
        first = self.masters[0]
        for index, master in enumerate(self.masters):
            with master.client() as client:
                low, high = index * 16384 // 3, (index + 1) * 16384 // 3 - 1
                client.execute_command("CLUSTER ADDSLOTSRANGE", low, high)
        with first.client() as client:
            for node in self.nodes[1:]:
                host, port = node.address
                client.execute_command("CLUSTER MEET", host, port, node.bus_port)
        for master, replica in zip(self.masters, self.replicas, strict=False):
            master_id = self.node_id(master)
            with replica.client() as client:
                wait_for(lambda c=client, m=master_id: any(  # type: ignore[misc]
                    node["node_id"] == m for node in c.execute_command("CLUSTER NODES").values()),
                    what="replica knows its master")
                client.execute_command("CLUSTER REPLICATE", master_id)
        self.wait_healthy()

    def node_id(self, node: RedisProcess) -> str:
        with node.client() as client:
            return str(client.execute_command("CLUSTER MYID"))

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        """Every node agrees the cluster is ok and every replica has synced with its master."""
        def healthy() -> bool:
            for node in self.nodes:
                if not node.running:
                    continue
                with node.client() as client:
                    if client.execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                        return False
                    info = client.info("replication")
                    if info["role"] == "slave" and info.get("master_link_status") != "up":
                        return False
            return True
        wait_for(healthy, timeout=timeout, what="cluster ok and replicas in sync")

    def url(self, *, tls: bool | None = None, user: str = USER, password: str | None = None,
            nodes: int = 1, query: dict[str, str] | None = None) -> str:
        """A BROKER_REDIS_URL naming the first `nodes` masters only: the client must discover the rest."""
        use_tls = bool(self.tls) if tls is None else tls
        hosts = ",".join(f"127.0.0.1:{m.tls_port if use_tls else m.port}" for m in self.masters[:nodes])
        scheme = "rediss+cluster" if use_tls else "redis+cluster"
        return f"{scheme}://{self.credentials(user, password)}{hosts}" + _url_options(
            self.tls if use_tls else None, query)

    def cluster_client(self) -> redis.RedisCluster:
        first = self.masters[0]
        return redis.RedisCluster(host="127.0.0.1", port=first.port, username=USER, password=self.password,
                                  decode_responses=True)

    def process_at(self, port: int) -> RedisProcess:
        return next(node for node in self.nodes if port in (node.port, node.tls_port))

    def shard_of(self, key: str) -> tuple[RedisProcess, list[RedisProcess]]:
        """The master that serves this key's slot now, and its replicas."""
        slot = key_slot(key.encode())
        with next(node for node in self.nodes if node.running).client() as client:
            shards = client.execute_command("CLUSTER SHARDS")
        for shard in shards:
            ranges = shard["slots"]
            if any(low <= slot <= high for low, high in zip(ranges[::2], ranges[1::2], strict=True)):
                master = [self.process_at(n["port"]) for n in shard["nodes"] if n["role"] == "master"]
                replicas = [self.process_at(n["port"]) for n in shard["nodes"] if n["role"] == "replica"]
                return master[0], replicas
        raise LookupError(f"no shard serves slot {slot}")

    def key_per_master(self, prefix: str) -> dict[RedisProcess, str]:
        """For each master, a key `<prefix>{n}` that lives on it."""
        with next(node for node in self.nodes if node.running).client() as client:
            ranges = [(low, high, self.process_at(int(primary[1]))) for low, high, primary, *_ in
                      client.execute_command("CLUSTER SLOTS")]
        found: dict[RedisProcess, str] = {}
        for low, high, master in ranges:
            found.setdefault(master, next(key for key in (f"{prefix}{{{n}}}" for n in range(100_000))
                                          if low <= key_slot(key.encode()) <= high))
        return found

    def wait_replicated(self) -> None:
        """Block until every write made so far on every master has reached its replica (WAIT after a marker)."""
        for master, marker in self.key_per_master("test:marker:").items():
            with master.client() as client:
                client.set(marker, "1")
                assert client.execute_command("WAIT", 1, 5000) >= 1, "a replica did not acknowledge"

    def failover(self, replica: RedisProcess) -> None:
        """A manual failover (CLUSTER FAILOVER on the replica): the master stops taking writes, the replica
        catches up, then takes over. Returns once the old master follows it and the whole cluster agrees."""
        with replica.client() as client:
            old = self.process_at(int(client.info("replication")["master_port"]))
            client.execute_command("CLUSTER FAILOVER")
            wait_for(lambda: client.info("replication")["role"] == "master", what="replica promoted")
        with old.client() as client:
            wait_for(lambda: client.info("replication").get("master_link_status") == "up",
                     what="old master follows the new one")
        self.wait_healthy()


# Redis Sentinel.

class SentinelTopology(_Topology):
    """One master with `replicas` replicas, watched by `sentinels` Sentinels (quorum 2, or 1 with one Sentinel).

    With `tls`, data nodes and Sentinels listen on TLS ports only, so a client that does not speak TLS to the
    Sentinels themselves gets nowhere. With replicas, the data nodes have `min-replicas-to-write 1`: a master
    left without replicas (the old one, once a failover took them) refuses writes instead of taking writes the
    failover throws away. Two replicas, so that the new master still has one and keeps taking writes.
    """

    def __init__(self, directory: Path, *, tls: bool = True, replicas: int = 2, sentinels: int = 3) -> None:
        super().__init__(directory, tls=tls)
        durability = ["min-replicas-to-write 1", "min-replicas-max-lag 2"] if replicas else []
        self.data = [self._process(f"data-{index}", plain=not tls, settings=durability)
                     for index in range(1 + replicas)]
        # The Sentinels also know a user of their own that the data nodes do not: `sentinel_username` in a URL.
        self.watcher_password = secrets.token_urlsafe(18)
        self.sentinels = [self._process(f"sentinel-{index}", plain=not tls, sentinel=True)
                          for index in range(sentinels)]

    def _sentinel_settings(self) -> list[str]:
        """What each Sentinel watches, once the master listens where it will stay."""
        host, port = self.data[0].address
        return [f"user {WATCHER} on >{self.watcher_password} ~* &* +@all",
                f"sentinel monitor {SERVICE} {host} {port} {min(2, len(self.sentinels))}",
                f"sentinel auth-user {SERVICE} {USER}", f"sentinel auth-pass {SERVICE} {self.password}",
                f"sentinel sentinel-user {USER}", f"sentinel sentinel-pass {self.password}",
                f"sentinel down-after-milliseconds {SERVICE} 2000", f"sentinel failover-timeout {SERVICE} 10000"]

    def start(self) -> None:
        master, *replicas = self.data
        master.start().wait_ready()
        for replica in replicas:
            replica.settings.append("replicaof {} {}".format(*master.address))
            replica.start()
        for replica in replicas:
            replica.wait_ready()
        for sentinel in self.sentinels:
            sentinel.settings = self._sentinel_settings()
            sentinel.start()
        for sentinel in self.sentinels:
            sentinel.wait_ready()
        self.wait_settled()

    def wait_settled(self, timeout: float = START_TIMEOUT, *, replicas_in_sync: bool = True) -> RedisProcess:
        """Every Sentinel names the same master; with `replicas_in_sync`, every Sentinel knows every replica and
        every replica is in sync with that master too. Returns the master. (Whether the Sentinels have found each
        other yet does not matter here: SENTINEL FAILOVER needs no vote, and clients ask any of them.)"""
        def settled() -> RedisProcess | None:
            masters = set()
            for sentinel in self.sentinels:
                with sentinel.client() as client:
                    state = client.sentinel_master(SERVICE)
                    known = client.sentinel_slaves(SERVICE)
                if replicas_in_sync and (state["num-slaves"] < len(self.data) - 1 or any(
                        "disconnected" in r["flags"] or "s_down" in r["flags"] for r in known)):
                    return None
                masters.add(int(state["port"]))
            if len(masters) != 1:
                return None
            master = self.process_at(masters.pop())
            if not replicas_in_sync:
                return master
            with master.client() as client:
                info = client.info("replication")
            in_sync = info["role"] == "master" and info["connected_slaves"] == len(self.data) - 1
            return master if in_sync else None
        return wait_for(settled, timeout=timeout, what="Sentinels agree on one master")

    def process_at(self, port: int) -> RedisProcess:
        return next(process for process in self.data if port in (process.port, process.tls_port))

    def master(self) -> RedisProcess:
        with self.sentinels[0].client() as client:
            _, port = client.sentinel_get_master_addr_by_name(SERVICE)
        return self.process_at(int(port))

    def url(self, *, user: str = USER, password: str | None = None, query: dict[str, str] | None = None,
            db: int = 0) -> str:
        hosts = ",".join("{}:{}".format(*sentinel.address) for sentinel in self.sentinels)
        scheme = "rediss+sentinel" if self.tls else "redis+sentinel"
        return f"{scheme}://{self.credentials(user, password)}{hosts}/{SERVICE}/{db}" + _url_options(self.tls, query)

    def application_clients(self, process: RedisProcess) -> list[str]:
        """Addresses of the clients' connections to `process` (commands and pub/sub), other than the Sentinels'
        and this call's own."""
        with process.client() as client:
            me = str(client.client_id())
            entries = [*client.client_list(_type="normal"), *client.client_list(_type="pubsub")]
        return [entry["addr"] for entry in entries if entry["id"] != me and not entry["name"].startswith("sentinel-")]

    def wait_replicated(self) -> None:
        """Block until every write made on the master so far has reached every replica (WAIT on a marker)."""
        master = self.master()
        with master.client() as client:
            client.set("test:replication-marker", secrets.token_hex(4))
            acknowledged = client.execute_command("WAIT", len(self.data) - 1, 5000)
        assert acknowledged == len(self.data) - 1, "replicas did not acknowledge"

    def failover(self, *, pause_writes: bool = False) -> RedisProcess:
        """SENTINEL FAILOVER, then wait until the Sentinels agree on the new master; returns it.

        With `pause_writes`, the planned way that loses nothing: CLIENT PAUSE WRITE on the master first, wait
        until its replicas have every write, fail over, and lift the pause only once the old master has no
        replica left (from then on min-replicas-to-write makes it refuse writes)."""
        old = self.master()
        if pause_writes:
            with old.client() as client:
                client.execute_command("CLIENT PAUSE", 30_000, "WRITE")
                wait_for(lambda: _replicas_caught_up(client.info("replication")), what="replicas caught up")
        with self.sentinels[0].client() as client:
            client.execute_command("SENTINEL FAILOVER", SERVICE)
        wait_for(lambda: self.master() is not old, what="Sentinels elect a new master")
        if pause_writes:
            with old.client() as client:
                wait_for(lambda: client.info("replication")["connected_slaves"] == 0, what="old master alone")
                client.execute_command("CLIENT UNPAUSE")
        # The old master is turned into a replica only several seconds later: do not wait for that.
        return self.wait_settled(timeout=30, replicas_in_sync=False)


def _replicas_caught_up(info: dict[str, Any]) -> bool:
    offsets = [int(value["offset"]) for key, value in info.items() if key.startswith("slave") and key[5:].isdigit()]
    return bool(offsets) and all(offset == int(info["master_repl_offset"]) for offset in offsets)


# A standalone server with every way in.

class StandaloneServer(_Topology):
    """One server on a plain port, a TLS port and a Unix socket, with the ACL user."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, tls=True)
        self.socket = self.directory / "server" / "redis.sock"
        self.server = self._process("server", settings=[f"unixsocket {self.socket}", "unixsocketperm 700"])

    def start(self) -> None:
        self.server.start().wait_ready()


# The shared server of the whole test run.

class SlotCheckingRedis(EmbeddedRedis):
    """The tests' shared redis-server, run as a one-node Redis Cluster that holds every slot.

    To a plain client it behaves like any server (database 0), but it refuses, as a real Cluster would, any
    MULTI or script whose keys span two slots (CROSSSLOT). So every test that drives the broker also checks
    that each of its atomic steps stays in one slot, on the way.
    """

    def __init__(self, data_dir: Path, **options: Any) -> None:
        super().__init__(data_dir, **options)
        # Named, because the default bus port (port + 10000) does not exist for ports above 55535.
        self.bus_port = distinct_port()

    def _arguments(self) -> list[str]:
        return [*super()._arguments(), "--cluster-enabled", "yes", "--cluster-port", str(self.bus_port),
                "--cluster-config-file", str(self.data_dir / "nodes.conf")]

    def start(self) -> None:
        super().start()
        client = redis.Redis.from_url(self.url, decode_responses=True)
        try:
            if client.execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                client.execute_command("CLUSTER ADDSLOTSRANGE", 0, 16383)
            wait_for(lambda: client.execute_command("CLUSTER INFO").get("cluster_state") == "ok",
                     what="one-node cluster ok")
        finally:
            client.close()
