"""Redis failing under load: killed (SIGKILL) while clients hammer the broker, then restarted from its append-only
file; and Redis stalled (CLIENT PAUSE). Every answer meanwhile is a 503 with Retry-After in the endpoint's own
shape, never a 500 or a logout, and service resumes with every session, refresh family and sealed TikTok grant."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from broker.config import Secret, Settings
from broker.store.embedded import EmbeddedRedis, free_port
from tests.e2e.conftest import Stack, start_stack
from tests.support.load import Answer, Load, Worker
from tests.support.people import SESSION_COOKIE, Person, age_grant, sign_in, stored_grant

PEOPLE = ("Redis Ada", "Redis Bo", "Redis Cy")
# What each kind of request may answer while Redis comes and goes: success or 503, nothing else.
ALLOWED = {"verify-cookie": {200, 503}, "verify-bearer": {200, 503}, "refresh": {200, 503}, "login": {302, 503}}
CACHED = ("verify-cookie", "verify-bearer")  # answered from the per-process session cache while it is trusted


@dataclass
class Durable:
    stack: Stack
    redis: EmbeddedRedis
    people: list[Person]

    def revived(self) -> EmbeddedRedis:
        """The same server again: same port, password and data folder, so it replays the append-only file."""
        return EmbeddedRedis(self.redis.data_dir, port=self.redis.port, password=self.redis.password)


@pytest.fixture
def durable(base_settings: Settings, tmp_path: Path) -> Iterator[Durable]:
    server = EmbeddedRedis(tmp_path / "redis", port=free_port())
    server.start()
    admin = redis.Redis.from_url(server.url)
    admin.config_set("appendfsync", "always")  # so a kill -9 loses nothing that was acknowledged
    admin.close()
    stack, servers = start_stack(base_settings.with_overrides(redis_url=Secret(server.url)))
    people = [sign_in(stack.broker.url, name) for name in PEOPLE]
    yield Durable(stack, server, people)
    for person in people:
        person.browser.close()
    for running in servers:
        running.stop()
    server.stop()


def workers(url: str, people: list[Person]) -> list[Worker]:
    """Per person: gateway checks with the cookie and with the JWT, and a refresh loop keeping the newest token."""
    made = [Worker("login", lambda c: c.get(f"{url}/login"))]
    for person in people:
        def keep_newest(response: httpx.Response, person: Person = person) -> None:
            if response.status_code == 200:
                person.refresh_token = response.json()["refresh_token"]
        made += [
            Worker("verify-cookie", lambda c, p=person: c.get(f"{url}/auth/verify", headers=p.cookie_header)),
            Worker("verify-bearer", lambda c, p=person: c.get(f"{url}/auth/verify", headers=p.bearer_header)),
            Worker("refresh", lambda c, p=person: c.post(f"{url}/oauth/token", data={
                "grant_type": "refresh_token", "refresh_token": p.refresh_token}), keep_newest),
        ]
    return made


def assert_unavailable(answer: Answer) -> None:
    """A 503 in the endpoint's shape: JSON for APIs, the HTML error page for /login; never a cleared session."""
    assert answer.status == 503, (answer.kind, answer.status, answer.body[:200])
    assert int(answer.headers["retry-after"]) > 0
    if answer.kind == "login":
        assert "text/html" in answer.headers["content-type"]
        assert "<code>temporarily_unavailable</code>" in answer.body
    else:
        assert answer.headers["content-type"] == "application/json"
        assert '"error":"temporarily_unavailable"' in answer.body
    assert not [c for c in answer.set_cookies() if c.startswith(SESSION_COOKIE)], answer.set_cookies()
    assert "Traceback" not in answer.body


def test_redis_killed_under_load_answers_503_then_everything_is_back(durable: Durable) -> None:
    stack, people, url = durable.stack, durable.people, durable.stack.broker.url
    load = Load(workers(url, people)).start()
    revived = durable.revived()
    try:
        assert load.wait_for(lambda: all(load.seen(k, 200) + load.seen(k, 302) >= 3 for k in ALLOWED), 15)
        durable.redis.kill()
        killed = time.monotonic()
        assert load.wait_for(lambda: all(load.seen(k, 503, since=killed) >= 3 for k in ALLOWED), 15)
        time.sleep(1.5)  # a while down, under load
        restarting = time.monotonic()
        revived.start()
        back = time.monotonic()
        assert load.wait_for(lambda: all(load.seen(k, 200, since=back) + load.seen(k, 302, since=back) >= 3
                                         for k in ALLOWED), 15), "service did not resume"
    finally:
        answers = load.stop()
    try:
        for answer in answers:
            assert answer.status in ALLOWED[answer.kind], (answer.kind, answer.status, answer.body[:200])
            if answer.status == 503:
                assert_unavailable(answer)
        down = [a for a in answers if a.started > killed and a.ended < restarting]
        assert down
        for kind in ALLOWED:
            # Gateway checks may still be served by the per-process session cache until its invalidation
            # connection notices that Redis is gone (milliseconds); from the first 503 on, only 503 until Redis
            # is back. Everything else needs Redis and answers 503 from the start.
            ofkind = [a for a in down if a.kind == kind]
            first = next(i for i, a in enumerate(ofkind) if a.status == 503)
            assert kind in CACHED or first == 0, (kind, [a.status for a in ofkind])
            assert all(a.status == 503 for a in ofkind[first:] if a.started > ofkind[first].ended), kind
        assert sum(a.status == 200 for a in answers if a.kind == "refresh") >= 3  # rotation went on around the outage

        for person in people:  # every session, refresh family and sealed TikTok grant survived the crash
            check = httpx.get(f"{url}/auth/verify", headers=person.cookie_header)
            assert check.status_code == 200 and check.headers["x-auth-request-user"] == person.sub
            assert httpx.get(f"{url}/auth/verify", headers=person.bearer_header).status_code == 200
            rotated = httpx.post(f"{url}/oauth/token", data={"grant_type": "refresh_token",
                                                             "refresh_token": person.refresh_token})
            assert rotated.status_code == 200, rotated.text
            profile = httpx.get(f"{url}/tiktok/v2/user/info/", params={"fields": "open_id,display_name"},
                                headers=person.bearer_header)
            assert profile.status_code == 200 and profile.json()["data"]["user"]["display_name"] == person.name
        # The sealed refresh token itself works at TikTok: force a TikTok refresh and use its result.
        first = people[0]
        before = age_grant(stack.settings, first.sub, time.time() - 1)
        profile = httpx.get(f"{url}/tiktok/v2/user/info/", params={"fields": "open_id"}, headers=first.bearer_header)
        assert profile.status_code == 200, profile.text
        refreshes = [c for c in stack.tiktok.calls if c["grant_type"] == "refresh_token"]
        assert [(c["token"], c["status"], c["error"]) for c in refreshes] == [(before.refresh_token, 200, None)]
        after = stored_grant(stack.settings, first.sub)
        assert after is not None and after[1].refresh_token != before.refresh_token
        # And a newcomer can log in, with no broker restart anywhere.
        sign_in(url, "Redis Newcomer").browser.close()
    finally:
        revived.stop()


def test_a_stalled_redis_gives_a_bounded_503_not_a_hang(durable: Durable) -> None:
    url, person = durable.stack.broker.url, durable.people[0]
    pause_ms = 8000
    requests = {
        "verify-cookie": ("GET", "/auth/verify", {"headers": person.cookie_header}),
        "verify-bearer": ("GET", "/auth/verify", {"headers": person.bearer_header}),
        "refresh": ("POST", "/oauth/token", {"data": {"grant_type": "refresh_token",
                                                      "refresh_token": person.refresh_token}}),
        "login": ("GET", "/login", {}),
    }

    async def all_at_once() -> list[Answer]:
        async def one(client: httpx.AsyncClient, kind: str) -> Answer:
            method, path, options = requests[kind]
            started = time.monotonic()
            response = await client.request(method, f"{url}{path}", **options)  # type: ignore[arg-type]
            return Answer(kind, started, time.monotonic(), response.status_code, response.headers, response.text)
        async with httpx.AsyncClient(timeout=30) as client:
            return list(await asyncio.gather(*(one(client, kind) for kind in requests)))

    admin = redis.Redis.from_url(durable.redis.url)
    try:
        admin.execute_command("CLIENT", "PAUSE", pause_ms, "ALL")  # every client's next command waits
        paused = time.monotonic()
        answers = asyncio.run(all_at_once())
    finally:
        admin.close()
    for answer in answers:
        # Answered while Redis was still paused: the broker gave up by itself (503), or a gateway check was
        # served by the per-process cache, which Redis could not have invalidated meanwhile (every write waits).
        assert answer.ended - paused < pause_ms / 1000
        if answer.kind in CACHED and answer.status == 200:
            assert answer.headers["x-auth-request-user"] == person.sub
        else:
            assert_unavailable(answer)
    # Once Redis answers again the same credentials work: the stall ended nothing. (A gateway check may be
    # answered from memory while Redis is still paused, so wait for the pause itself to end.)
    time.sleep(max(0.0, paused + pause_ms / 1000 - time.monotonic()))
    deadline = time.monotonic() + 15
    while httpx.get(f"{url}/auth/verify", headers=person.cookie_header).status_code != 200:
        assert time.monotonic() < deadline, "did not recover after the pause"
        time.sleep(0.2)
    rotated = httpx.post(f"{url}/oauth/token", data={"grant_type": "refresh_token",
                                                     "refresh_token": person.refresh_token})
    assert rotated.status_code == 200, rotated.text


def test_a_frozen_redis_is_a_503_within_two_seconds(durable: Durable) -> None:
    """SIGSTOP: connections are still accepted and nothing is ever answered. Each request gives up by itself."""
    url, person = durable.stack.broker.url, durable.people[0]
    admin = redis.Redis.from_url(durable.redis.url)
    pid = int(admin.info("server")["process_id"])
    admin.close()
    requests = [("login", "GET", "/login", {}),
                ("refresh", "POST", "/oauth/token", {"data": {"grant_type": "refresh_token",
                                                              "refresh_token": person.refresh_token}}),
                ("verify-cookie", "GET", "/auth/verify", {"headers": person.cookie_header})]
    os.kill(pid, signal.SIGSTOP)
    try:
        for kind, method, path, options in requests:
            started = time.monotonic()
            response = httpx.request(method, f"{url}{path}", timeout=30, **options)  # type: ignore[arg-type]
            took = time.monotonic() - started
            answer = Answer(kind, started, time.monotonic(), response.status_code, response.headers, response.text)
            assert took < 2.2, f"{kind} took {took:.1f} s"
            if not (kind in CACHED and answer.status == 200):
                assert_unavailable(answer)
    finally:
        os.kill(pid, signal.SIGCONT)
