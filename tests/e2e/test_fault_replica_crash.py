"""A broker replica killed (SIGKILL) in the middle of a user's TikTok refresh: two real `broker serve` processes
sharing one Redis, the emulator slow on its token endpoint. The other replica takes the refresh over within one
request once the dead one's lease lapses, and the user's TikTok grant survives whenever it still can.

TikTok rotates the refresh token when it handles a refresh (the old one stops working at once). So the outcome
depends on what TikTok did with the dead replica's call:
- still working on it when the survivor takes over: the survivor's refresh wins, stores the newest refresh token,
  and TikTok refuses the dead replica's late attempt, since its token is already spent;
- already answered it: the new refresh token died with the replica, nothing anywhere can recover it. The survivor
  gets invalid_grant, ends the TikTok link once (the user's broker sessions stay), answers 401 login_required
  without calling TikTok again, and the user's next login links TikTok anew.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from broker.config import Settings
from broker.store.embedded import free_port
from tests.cli import Running, production_env, running_broker
from tests.conftest import vault_entry
from tests.support.people import Person, age_grant, sign_in, stored_grant
from tests.support.servers import ThreadedServer
from tiktok_emulator import EmulatorConfig, create_emulator_app, ids

TIMEOUT = "2"  # BROKER_TIKTOK_TIMEOUT of both replicas: a waiter outlasts a dead holder's lease within one request
LEASE = "broker:{{u:{}}}:tiktok:lease"


@dataclass
class Cluster:
    issuer: str  # the public URL (replica A's port: TikTok sends browsers back there)
    urls: dict[str, str]  # replica name -> its own URL
    env: dict[str, str]
    cwd: Path
    emulator: Any  # the emulator's state
    settings: Settings  # for reading Redis as the replicas do
    processes: dict[str, Running]

    def start(self, name: str, stack: Any) -> None:
        port = self.urls[name].rsplit(":", 1)[1]
        running = stack.enter_context(running_broker("serve", "--host", "127.0.0.1", "--port", port,
                                                     env=self.env, cwd=self.cwd))
        self.processes[name] = running

    def ready(self, name: str) -> None:
        self.processes[name].wait_for(f"{self.urls[name]}/readyz")

    def kill(self, name: str) -> None:
        process = self.processes[name].process
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def profile(self, name: str, person: Person) -> httpx.Response:
        return httpx.get(f"{self.urls[name]}/tiktok/v2/user/info/", params={"fields": "open_id,display_name"},
                         headers=person.bearer_header, timeout=30)

    def refreshes(self) -> list[dict[str, Any]]:
        return [c for c in self.emulator.calls if c["grant_type"] == "refresh_token"]

    def live_refresh_tokens(self, person: Person) -> list[str]:
        open_id = ids.derived_open_id(self.settings.tiktok_client_key, person.name)
        return [t.token for t in self.emulator.issued_tokens_for(open_id) if t.kind == "refresh" and t.active]


@pytest.fixture
def cluster(base_settings: Settings, keys_dir: Path, redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    from contextlib import ExitStack

    port_a, port_b, emulator_port = free_port(), free_port(), free_port()
    issuer, emulator_url = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{emulator_port}"
    emulator_app = create_emulator_app(EmulatorConfig(redirect_uris=(f"{issuer}/callback",), public_url=emulator_url))
    env = production_env(redis_url, keys_dir, vault_entry(base_settings.vault_keys[0]), ISSUER=issuer,
                         TIKTOK_CLIENT_KEY=base_settings.tiktok_client_key,
                         TIKTOK_CLIENT_SECRET=base_settings.tiktok_client_secret.reveal(),
                         TIKTOK_AUTHORIZE_URL=f"{emulator_url}/v2/auth/authorize/", TIKTOK_API_URL=emulator_url,
                         TIKTOK_TIMEOUT=TIMEOUT)
    with ThreadedServer(emulator_app, emulator_port), ExitStack() as stack:
        made = Cluster(issuer, {"A": issuer, "B": f"http://127.0.0.1:{port_b}"}, env, tmp_path,
                       emulator_app.state.emulator, base_settings, {})
        made.start("A", stack)
        made.start("B", stack)
        made.ready("A")
        made.ready("B")
        made.stack = stack  # type: ignore[attr-defined]
        yield made


def start_refresh_then_kill(cluster: Cluster, holder: str, person: Person, *, tiktok_ms: int) -> None:
    """`holder` starts the user's refresh (its caller soon gets a 503; the refresh goes on holding the lease);
    once TikTok has the request, the replica is killed. TikTok answers it `tiktok_ms` after it arrived."""
    age_grant(cluster.settings, person.sub, time.time() - 1)
    cluster.emulator.set_fault("token", "latency", latency_ms=tiktok_ms, count=1)
    answers: list[int] = []

    def call() -> None:
        try:
            answers.append(cluster.profile(holder, person).status_code)
        except httpx.TransportError:
            answers.append(0)  # cut off by the kill

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 10
    while cluster.emulator.faults.active():  # taken when the refresh arrives at TikTok
        assert time.monotonic() < deadline, "the refresh never reached TikTok"
        time.sleep(0.01)
    assert redis.Redis.from_url(cluster.env["BROKER_REDIS_URL"]).exists(LEASE.format(person.sub)) == 1
    cluster.kill(holder)
    caller.join(10)
    assert answers in ([0], [503])  # let go after the TikTok timeout, or cut off by the kill


def test_a_replica_killed_mid_refresh_is_taken_over_and_the_grant_kept(cluster: Cluster,
                                                                       redis_sync: redis.Redis) -> None:
    first, second = sign_in(cluster.issuer, "Crash Ann"), sign_in(cluster.issuer, "Crash Ben")

    # 1. TikTok is still on A's refresh when B takes over: B's refresh wins and nothing is lost.
    start_refresh_then_kill(cluster, "A", first, tiktok_ms=5000)
    answer = cluster.profile("B", first)  # waits out A's lease (it is no longer renewed), then refreshes
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["user"]["display_name"] == first.name
    deadline = time.monotonic() + 10
    while len(cluster.refreshes()) < 2:  # A's call, finished by TikTok after B's
        assert time.monotonic() < deadline, cluster.refreshes()
        time.sleep(0.05)
    assert [c["error"] for c in cluster.refreshes()] == [None, "invalid_grant"]  # B's, then A's late one
    stored = stored_grant(cluster.settings, first.sub)
    assert stored is not None and cluster.live_refresh_tokens(first) == [stored[1].refresh_token]
    assert redis_sync.exists(LEASE.format(first.sub)) == 0
    # Later calls work, including another refresh with what B stored.
    age_grant(cluster.settings, first.sub, time.time() - 1)
    assert cluster.profile("B", first).status_code == 200
    assert [c["error"] for c in cluster.refreshes()][2:] == [None]

    # The orchestrator restarts A; it joins as if nothing happened.
    cluster.start("A", cluster.stack)  # type: ignore[attr-defined]
    cluster.ready("A")
    assert cluster.profile("A", first).status_code == 200

    # 2. TikTok answered B's refresh, then B died before storing it: the new refresh token is gone with B.
    calls_before = len(cluster.refreshes())
    start_refresh_then_kill(cluster, "B", second, tiktok_ms=300)
    while len(cluster.refreshes()) == calls_before:  # TikTok rotated; the answer went to a dead socket
        time.sleep(0.05)
    for _ in range(3):
        answer = cluster.profile("A", second)
        assert answer.status_code == 401 and answer.json()["error"] == "login_required", answer.text
    assert [c["error"] for c in cluster.refreshes()[calls_before:]] == [None, "invalid_grant"]  # no retry loop
    user = redis_sync.hgetall(f"broker:{{u:{second.sub}}}:user")
    assert user["tiktok_link"] == "broken" and user["tiktok_link_reason"] == "invalid_grant"
    # The broker session is untouched, and the next login links TikTok again.
    assert httpx.get(f"{cluster.issuer}/auth/verify", headers=second.cookie_header).status_code == 200
    again = sign_in(cluster.issuer, second.name)
    assert again.sub == second.sub and cluster.profile("A", again).status_code == 200
    assert redis_sync.hget(f"broker:{{u:{second.sub}}}:user", "tiktok_link") == "linked"
