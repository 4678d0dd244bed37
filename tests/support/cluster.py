"""A real three-node Redis Cluster on loopback (no replicas), for tests that must hold on Cluster's slot rules."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from broker.store.embedded import find_redis_server, free_port

SLOTS = 16384
NODES = 3
BUS_OFFSET = 10000


def _cluster_port() -> int:
    """A free port whose cluster-bus port (port + 10000) exists and is free too."""
    while True:
        port = free_port()
        if port + BUS_OFFSET <= 65535 and _is_free(port + BUS_OFFSET):
            return port


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _start(binary: str, workdir: Path, port: int) -> subprocess.Popen[bytes]:
    directory = workdir / str(port)
    directory.mkdir(parents=True)
    return subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
         "--cluster-config-file", str(directory / "nodes.conf"), "--dir", str(directory), "--save", "",
         "--appendonly", "no", "--logfile", str(directory / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)


def _client(port: int) -> redis.Redis:
    deadline = time.monotonic() + 10
    while True:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
        try:
            client.ping()
            return client
        except redis.ConnectionError:
            client.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _state(client: redis.Redis) -> str:
    info = client.execute_command("CLUSTER INFO")  # parsed into a dict by redis-py
    state = info.get("cluster_state", b"") if isinstance(info, dict) else b""
    return state.decode() if isinstance(state, bytes) else str(state)


@contextmanager
def redis_cluster(workdir: Path) -> Iterator[str]:
    """Start the nodes, split the slots between them, introduce them; yield a redis+cluster:// URL."""
    binary = find_redis_server()
    ports = [_cluster_port() for _ in range(NODES)]
    processes = [_start(binary, workdir, port) for port in ports]
    clients: list[redis.Redis] = []
    try:
        clients = [_client(port) for port in ports]
        share = SLOTS // NODES
        for index, client in enumerate(clients):
            last = SLOTS if index == NODES - 1 else (index + 1) * share
            client.execute_command("CLUSTER ADDSLOTS", *range(index * share, last))
        for port in ports[1:]:
            clients[0].execute_command("CLUSTER MEET", "127.0.0.1", port)
        deadline = time.monotonic() + 20
        while not all(_state(client) == "ok" for client in clients):
            assert time.monotonic() < deadline, "the cluster did not come up"
            time.sleep(0.05)
        yield "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in ports)
    finally:
        for client in clients:
            client.close()
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
