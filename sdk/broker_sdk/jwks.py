"""JwksCache: the broker's published keys by kid, cached per Cache-Control, revalidated, refetched sparingly."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import httpx

from broker_sdk.errors import VerifierUnavailable
from broker_sdk.http import cookieless_client
from broker_sdk.keys import SUPPORTED_ALGORITHMS, VerificationKey, freshness_lifetime, parse_jwks

log = logging.getLogger(__name__)

MAX_JWKS_BYTES = 512 * 1024  # far above any real key set; stops a misbehaving server from filling memory


@dataclass
class JwksStats:
    """What the cache did, for metrics and tests."""

    fetches: int = 0  # requests sent (200s, 304s and failures)
    not_modified: int = 0  # 304 answers to a revalidation
    failures: int = 0  # requests that brought no usable answer
    unknown_kid_refetches: int = 0  # requests sent because a token named a kid the cache did not know


class JwksCache:
    """Fetches a JWKS and keeps its usable keys by kid.

    - Fresh for the response's Cache-Control max-age (`default_max_age` without one, at most
      `max_max_age`); then revalidated with If-None-Match, a 304 keeping the keys and restarting their age.
    - A kid it does not know causes one refetch, but the JWKS is requested at most once per
      `min_refetch_interval` seconds for any reason; concurrent callers wait for the one request in flight.
    - When a request fails the cached keys keep serving (stale-if-error) for up to `max_stale` seconds past
      their freshness; with no keys at all, VerifierUnavailable says why.
    - Only keys with `use` "sig" (or none) and an `alg` in `algorithms` are kept.

    `clock` measures intervals (time.monotonic by default). A client passed as `http` is not closed by
    `aclose()`; the one made otherwise is.
    """

    def __init__(self, jwks_url: str, *, http: httpx.AsyncClient | None = None,
                 clock: Callable[[], float] = time.monotonic, min_refetch_interval: float = 10.0,
                 default_max_age: float = 300, max_max_age: float = 86400, max_stale: float = 86400,
                 algorithms: Iterable[str] = ("ES256", "EdDSA", "RS256")) -> None:
        allowed = frozenset(algorithms)
        if not allowed or not allowed <= SUPPORTED_ALGORITHMS:
            raise ValueError(f"algorithms must be some of {', '.join(sorted(SUPPORTED_ALGORITHMS))}")
        if min_refetch_interval < 0 or default_max_age < 0 or max_max_age < 0 or max_stale < 0:
            raise ValueError("intervals and ages must not be negative")
        self.url = jwks_url
        self.algorithms = allowed
        self.stats = JwksStats()
        self._owns_http = http is None
        self._http = http if http is not None else cookieless_client()
        self._clock = clock
        self._min_interval = min_refetch_interval
        self._default_max_age = default_max_age
        self._max_max_age = max_max_age
        self._max_stale = max_stale
        self._keys: dict[str, VerificationKey] | None = None
        self._etag: str | None = None
        self._fresh_until = -math.inf
        self._last_attempt = -math.inf
        self._last_error = "not fetched yet"
        self._attempts = 0
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"JwksCache({self.url!r}, keys={len(self._keys or {})})"

    async def get_key(self, kid: str) -> VerificationKey | None:
        """The published key with this kid, or None if the broker does not publish it (after at most one
        refetch); VerifierUnavailable when there are no usable keys at all."""
        if self._clock() >= self._fresh_until:
            await self._refresh(self._attempts, unknown_kid=False)
        key = self._usable().get(kid)
        # Refetch if allowed, or wait for the request already in flight: it may bring this kid.
        if key is None and (self._may_fetch() or self._lock.locked()):
            await self._refresh(self._attempts, unknown_kid=True)
            key = self._usable().get(kid)
        return key

    async def keys(self) -> dict[str, VerificationKey]:
        """Every usable key by kid, fetching (or revalidating) first if the cache is not fresh."""
        if self._clock() >= self._fresh_until:
            await self._refresh(self._attempts, unknown_kid=False)
        return dict(self._usable())

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    def _usable(self) -> dict[str, VerificationKey]:
        if self._keys is None:
            raise VerifierUnavailable(f"no signing keys from {self.url}: {self._last_error}")
        if self._clock() >= self._fresh_until + self._max_stale:
            raise VerifierUnavailable(f"signing keys from {self.url} are too stale: {self._last_error}")
        return self._keys

    def _may_fetch(self) -> bool:
        return self._clock() - self._last_attempt >= self._min_interval

    async def _refresh(self, seen: int, *, unknown_kid: bool) -> None:
        async with self._lock:
            if self._attempts != seen or not self._may_fetch():
                return  # another caller fetched while we waited (use its answer), or it is too soon
            self._last_attempt = started = self._clock()
            self.stats.fetches += 1
            self.stats.unknown_kid_refetches += unknown_kid
            try:
                await self._fetch(started)
            except (httpx.HTTPError, ValueError) as exc:
                self.stats.failures += 1
                self._last_error = f"{type(exc).__name__}: {exc}"
                log.warning("fetching the JWKS from %s failed (%s); %s", self.url, self._last_error,
                            "keeping the cached keys" if self._keys is not None else "no keys yet")
            finally:
                # Counted once finished: a caller that read the count during this request waits for it.
                self._attempts += 1

    async def _fetch(self, started: float) -> None:
        headers = {"Accept": "application/json"}
        if self._etag and self._keys is not None:
            headers["If-None-Match"] = self._etag
        async with self._http.stream("GET", self.url, headers=headers) as response:
            lifetime = freshness_lifetime(response.headers, default=self._default_max_age,
                                          maximum=self._max_max_age)
            if response.status_code == 304 and self._keys is not None:
                self.stats.not_modified += 1
                self._fresh_until = started + lifetime
                return
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError("JWKS response too large")
            etag = response.headers.get("etag")
        keys = parse_jwks(json.loads(bytes(body)), self.algorithms)
        self._keys, self._etag, self._fresh_until = keys, etag, started + lifetime
        log.debug("JWKS from %s: %d usable keys, fresh for %.0fs", self.url, len(keys), lifetime)
