"""Steady /auth/verify and refresh traffic from threads, every answer checked, for tests that break Redis meanwhile.

An acceptable answer is 200, or 503 with Retry-After and no cookie set (an outage is never a logout). A refresh
worker keeps its chain going: after a 503 it presents the same refresh token again, as a client would. If the
broker answers invalid_grant to a token it handed out itself, the rotation that made the token was lost (Redis
replication is asynchronous: a failover can drop the last writes of the old master); the worker records when
that token was handed out, so that a test can check such losses stay within the switch, and starts a new chain
from its browser session, as a web app would.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from broker.flows.tokens import SESSION_GRANT


@dataclass
class Answer:
    kind: str  # verify | refresh
    sent: float  # monotonic instants
    answered: float
    status: int


@dataclass(frozen=True)
class LostRotation:
    """A refresh token the broker handed out and later did not know: the request that got it ran in this span."""

    sent: float
    answered: float


@dataclass
class GatewayLoad:
    url: str
    answers: list[Answer] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    lost_rotations: list[LostRotation] = field(default_factory=list)
    refresh_tokens: dict[int, str] = field(default_factory=dict)  # the newest token of each refresh worker
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, *, cookies: list[httpx.Cookies], refresh_tokens: list[str]) -> GatewayLoad:
        """One verify worker per cookie jar, one refresh worker per token (it starts over from the same jar)."""
        for jar in cookies:
            self._threads.append(threading.Thread(target=self._verify, args=(jar,), daemon=True))
        for index, (token, jar) in enumerate(zip(refresh_tokens, cookies, strict=True)):
            self.refresh_tokens[index] = token
            self._threads.append(threading.Thread(target=self._refresh, args=(index, jar), daemon=True))
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in self._threads), "a load thread hangs"

    def statuses(self) -> Counter[tuple[str, int]]:
        with self._lock:
            return Counter((answer.kind, answer.status) for answer in self.answers)

    def in_flight_during(self, start: float, end: float) -> list[Answer]:
        """Answers to requests that were under way at some point between `start` and `end`."""
        with self._lock:
            return [a for a in self.answers if a.sent <= end and a.answered >= start]

    def answered_after(self, instant: float, kind: str, status: int = 200) -> int:
        with self._lock:
            return sum(1 for a in self.answers if a.sent > instant and (a.kind, a.status) == (kind, status))

    def _record(self, kind: str, sent: float, response: httpx.Response, *, lost: bool = False) -> None:
        with self._lock:
            self.answers.append(Answer(kind, sent, time.monotonic(), response.status_code))
            if lost:
                return
            if response.status_code == 503:
                if not response.headers.get("retry-after"):
                    self.problems.append(f"{kind}: 503 without Retry-After")
                if "set-cookie" in response.headers:
                    self.problems.append(f"{kind}: 503 that sets a cookie: {response.headers['set-cookie']}")
            elif response.status_code != 200:
                self.problems.append(f"{kind}: {response.status_code} {response.text[:200]}")

    def _verify(self, jar: httpx.Cookies) -> None:
        with httpx.Client(cookies=jar, timeout=15) as client:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    response = client.get(f"{self.url}/auth/verify")
                except httpx.HTTPError as exc:
                    self.problems.append(f"verify: {exc!r}")
                    continue
                self._record("verify", sent, response)

    def _refresh(self, index: int, jar: httpx.Cookies) -> None:
        issued = LostRotation(0.0, 0.0)  # the first token was handed out before the load started
        with httpx.Client(timeout=15) as client, httpx.Client(cookies=jar, timeout=15) as browser:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    if index in self.refresh_tokens:
                        response = client.post(f"{self.url}/oauth/token", data={
                            "grant_type": "refresh_token", "refresh_token": self.refresh_tokens[index]})
                    else:  # a new chain from the browser session
                        response = browser.post(f"{self.url}/oauth/token", data={"grant_type": SESSION_GRANT},
                                                headers={"Origin": self.url})
                except httpx.HTTPError as exc:
                    self.problems.append(f"refresh: {exc!r}")
                    continue
                lost = (index in self.refresh_tokens and response.status_code == 400
                        and response.json().get("error") == "invalid_grant")
                self._record("refresh", sent, response, lost=lost)
                if response.status_code == 200:
                    self.refresh_tokens[index] = response.json()["refresh_token"]
                    issued = LostRotation(sent, time.monotonic())
                elif lost:
                    self.lost_rotations.append(issued)
                    del self.refresh_tokens[index]
                elif response.status_code == 503:
                    time.sleep(0.05)  # a client honouring Retry-After would wait longer; keep the test short
                else:
                    return  # the problem is recorded
