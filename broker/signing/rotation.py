"""Automatic signing-key rotation on an epoch-aligned schedule, decided from the key files and the clock only.

Owns: writing the next key ahead of time, writing the first key into an empty directory, pruning expired keys
and cleaning up its marker files. Which key signs and which are published at an instant stays the key ring's
decision (keyring.py); this module only adds files that the ring's rules then make safe.

Schedule. Rotation instants are the multiples of ``period`` seconds since the Unix epoch, so every replica
computes the same ones. With notice = jwks_max_age + NOTICE_SLACK and lead = jwks_max_age + margin, where
margin = max(jwks_max_age, MIN_MARGIN), a run at instant ``now``:

1. deletes the files of expired keys (retired for max_token_lifetime + jwks_max_age or longer);
2. if no key is active, writes one active at floor(now) (first start), else
3. takes B = the first multiple of the period with B - now >= notice and, if the newest key activates before
   B and B - now <= lead, writes a key with activate_at = B.

Why verifiers stay safe. A key for B is written at least ``notice`` seconds before B: every replica's key
ring rescans within a second, so any JWKS cached before the key was published expires before the key signs,
even for a verifier that never refetches on an unknown kid. A missed window (the broker was down) skips B:
the current key signs one period longer, but no key ever signs at short notice. A retired key stays published
until every token it signed has expired and every cache holding the old set has refreshed; only then is it
pruned. The window [B - lead, B - notice] is at least MIN_MARGIN - NOTICE_SLACK wide, so a loop that runs every
minute lands in it.

Concurrency. Creation is claimed with an O_CREAT|O_EXCL marker in the keys directory, ``.rotation-<B>`` (first
start: ``.rotation-start-<minute>``); the winner re-reads the keys before writing, losers do nothing. Hidden
names are ignored by the key loaders. If a winner dies between its marker and its key, that instant is skipped
(a first start is retried in the next minute). Markers older than KEEP_MARKERS periods are deleted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

from broker.clock import Clock
from broker.errors import ConfigError
from broker.signing.keyfiles import ALGORITHMS, ParseCache, SigningKey, delete_key, load_keys, write_key
from broker.signing.keyring import key_states

log = logging.getLogger(__name__)

NOTICE_SLACK = 5  # seconds beyond jwks_max_age: a key ring's rescan (1 s) plus modest clock skew
MIN_MARGIN = 120  # seconds: with it the creation window is >= 115 s wide, so a 60 s loop always hits it
START_BUCKET = 60  # seconds: replicas starting on an empty directory within one bucket create one key
KEEP_MARKERS = 3  # periods
MARKER_PREFIX = ".rotation-"

Plan = tuple[float, str]  # (activate_at, marker name)


class KeyRotator:
    """Rotates the keys in one directory; every replica may run one, they agree through the files."""

    def __init__(self, keys_dir: Path | str, *, period: int, alg: str, clock: Clock, jwks_max_age: int,
                 max_token_lifetime: int, also: Sequence[str] = ()) -> None:
        """period 0 means rotation is off: build no rotator then (ValueError here).

        `alg` is the broker's own algorithm; `also` the others it signs with (ID tokens): each algorithm's keys
        form a chain of their own (see keyring.py), and every chain is rotated on the same schedule."""
        if period <= 0:
            raise ValueError("period must be positive (0 means rotation is off: build no KeyRotator)")
        if period < 2 * (jwks_max_age + max_token_lifetime):
            raise ValueError("period must be at least twice jwks_max_age + max_token_lifetime")
        self.algs = tuple(dict.fromkeys((alg, *also)))
        for name in self.algs:
            if name not in ALGORITHMS:
                raise ValueError(f"unsupported algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}")
        self.keys_dir = Path(keys_dir)
        self.period = period
        self.alg = alg
        self.notice = jwks_max_age + NOTICE_SLACK
        self.lead = jwks_max_age + max(jwks_max_age, MIN_MARGIN)
        self._clock = clock
        self._retention = max_token_lifetime + jwks_max_age
        self._parsed: ParseCache = {}

    def __repr__(self) -> str:
        return f"KeyRotator({str(self.keys_dir)!r}, period={self.period}, alg={self.alg!r})"

    def next_instant(self, now: float) -> int:
        """The rotation instant a key written at `now` would get: the first multiple of the period at least
        `notice` seconds away."""
        return -(-math.ceil(now + self.notice) // self.period) * self.period

    def run_once(self) -> str | None:
        """Prune expired keys and write the next key of each algorithm if one is due; the kid of the first key
        written (at most one per algorithm), or None.

        Not reentrant on one instance (run it from one task); any number of instances may share a directory.
        """
        now = self._clock.now()
        keys = self._load()
        for key, status in key_states(keys, now, retention=self._retention):
            if status.state == "expired":
                delete_key(key)
                log.info("pruned expired signing key %s (retired at %.0f)", key.kid, status.retired_at)
        self._clean_markers(now)
        written = [kid for alg in self.algs if (kid := self._rotate(alg, keys, now)) is not None]
        return written[0] if written else None

    def _rotate(self, alg: str, keys: list[SigningKey], now: float) -> str | None:
        def chain(found: list[SigningKey]) -> list[SigningKey]:
            return [key for key in found if key.alg == alg]

        # The broker's own chain keeps the marker names it always had; the others name their algorithm.
        tag = "" if alg == self.alg else f"{alg}-"
        plan = self._plan(chain(keys), now, tag)
        if plan is None or not self._claim(plan[1]):
            return None
        if self._plan(chain(self._load()), now, tag) != plan:  # another replica or an operator was quicker
            return None
        key = write_key(self.keys_dir, alg=alg, activate_at=plan[0], created_at=now)
        log.info("created signing key %s (%s), active from %.0f", key.kid, key.alg, key.activate_at)
        return key.kid

    async def run_forever(self, *, interval: float = 60.0) -> None:
        """Call run_once every `interval` seconds until cancelled; failures are logged, never raised."""
        if not 0 < interval <= self.lead - self.notice:
            raise ValueError(f"interval must be positive and at most {self.lead - self.notice} seconds")
        while True:
            try:
                await asyncio.to_thread(self.run_once)
            except Exception:
                log.exception("signing-key rotation in %s failed; retrying in %.0f s", self.keys_dir, interval)
            await asyncio.sleep(interval)

    def _plan(self, keys: list[SigningKey], now: float, tag: str = "") -> Plan | None:
        if not any(key.activate_at <= now for key in keys):
            bucket = math.floor(now) // START_BUCKET * START_BUCKET
            return float(math.floor(now)), f"start-{tag}{bucket}"
        target = self.next_instant(now)
        newest = max(key.activate_at for key in keys)
        if newest < target and target - now <= self.lead:
            return float(target), f"{tag}{target}"
        return None

    def _load(self) -> list[SigningKey]:
        # Another replica may be halfway through writing (key before metadata) or deleting a pair.
        for _ in range(2):
            try:
                return load_keys(self.keys_dir, self._parsed)
            except ConfigError:
                time.sleep(0.05)
        return load_keys(self.keys_dir, self._parsed)

    def _claim(self, name: str) -> bool:
        self.keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(self.keys_dir / f"{MARKER_PREFIX}{name}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{os.uname().nodename} {os.getpid()}\n")
        return True

    def _clean_markers(self, now: float) -> None:
        try:
            with os.scandir(self.keys_dir) as entries:
                names = [entry.name for entry in entries if entry.name.startswith(MARKER_PREFIX)]
        except OSError:
            return
        for name in names:
            instant = name.rsplit("-", 1)[-1]
            if instant.isdigit() and int(instant) < now - KEEP_MARKERS * self.period:
                (self.keys_dir / name).unlink(missing_ok=True)
