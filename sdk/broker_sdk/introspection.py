"""Introspection: the online check (RFC 7662) that a verified token has not been revoked at the broker."""

from __future__ import annotations

import base64
import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from urllib.parse import quote

import httpx

from broker_sdk.errors import VerifierUnavailable
from broker_sdk.http import cookieless_client


def basic_credentials(client_id: str, client_secret: str) -> str:
    """An RFC 6749 section 2.3.1 Basic header value: both parts form-urlencoded before base64."""
    raw = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
    return "Basic " + base64.b64encode(raw.encode("utf-8")).decode("ascii")


class Introspection:
    """Asks the broker's introspection endpoint (client_secret_basic) whether a token is still active.

    Answers are remembered for `cache_ttl` seconds (0, the default, asks every time; keep it to a few
    seconds: a revocation takes that long to be noticed), never past the token's own expiry. A failed
    request or an answer that is not RFC 7662 raises VerifierUnavailable: the check fails closed.
    """

    def __init__(self, introspect_url: str, client_id: str, client_secret: str,
                 http: httpx.AsyncClient | None = None, *, cache_ttl: float = 0.0,
                 clock: Callable[[], float] = time.monotonic, max_entries: int = 10_000) -> None:
        if cache_ttl < 0 or max_entries < 1:
            raise ValueError("cache_ttl must not be negative and max_entries must be positive")
        self.url = introspect_url
        self.client_id = client_id
        self._authorization = basic_credentials(client_id, client_secret)
        self._owns_http = http is None
        self._http = http if http is not None else cookieless_client()
        self._cache_ttl = cache_ttl
        self._clock = clock
        self._max_entries = max_entries
        self._answers: OrderedDict[bytes, tuple[float, bool]] = OrderedDict()
        self.requests = 0  # introspection requests sent

    def __repr__(self) -> str:
        return f"Introspection({self.url!r}, client_id={self.client_id!r}, cache_ttl={self._cache_ttl})"

    async def is_active(self, token: str, *, lifetime: float = math.inf) -> bool:
        """Whether the broker says the token is active; `lifetime` (seconds the token has left) caps how long
        the answer is remembered."""
        now = self._clock()
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        cached = self._answers.get(digest)
        if cached is not None:
            if now < cached[0]:
                return cached[1]
            del self._answers[digest]
        active = await self._ask(token)
        ttl = min(self._cache_ttl, lifetime)
        if ttl > 0:
            self._answers[digest] = (now + ttl, active)
            while len(self._answers) > self._max_entries:
                self._answers.popitem(last=False)
        return active

    async def _ask(self, token: str) -> bool:
        self.requests += 1
        try:
            response = await self._http.post(
                self.url, data={"token": token, "token_type_hint": "access_token"},
                headers={"Authorization": self._authorization, "Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise VerifierUnavailable(f"introspection at {self.url} failed: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise VerifierUnavailable(f"introspection at {self.url} answered HTTP {response.status_code}")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        active = answer.get("active") if isinstance(answer, dict) else None
        if not isinstance(active, bool):
            raise VerifierUnavailable(f"introspection at {self.url} gave no RFC 7662 answer")
        return active

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()
