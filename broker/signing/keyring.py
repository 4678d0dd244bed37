"""Which key signs and which keys are published, at any instant: decided from key files and the clock.

Rules (the same on every replica, so none of them needs to talk to another). Each algorithm's keys form a chain
of their own (access tokens use the broker's algorithm, ID tokens RS256 or ES256), ordered by (activate_at, kid).
At instant t, within a chain:

- pending:  activate_at > t. Published in the JWKS (pre-publication) and accepted, never used to sign.
- active:   the last key of its algorithm with activate_at <= t. It signs for that algorithm.
- retired:  an older key whose successor (the next key of the same algorithm) has activate_at <= t; retired_at is
            the successor's activate_at. Still published and accepted until
            expires_at = retired_at + max_token_lifetime + jwks_max_age,
            so every token it signed expires, and every cached JWKS holding it is refreshed, before it goes.
- expired:  retired and t >= expires_at. Not published, not accepted; `prune_keys` deletes its files.

The published set changes only at key-file changes and at the instants above; a KeyRing computes a view
once per such interval and reuses it (parsed keys, the serialized JWKS) until the clock leaves it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from broker.clock import Clock
from broker.errors import BrokerError, ConfigError
from broker.signing.jwks import JwksDocument
from broker.signing.keyfiles import (
    ALGORITHMS,
    ParseCache,
    SigningKey,
    delete_key,
    fingerprint,
    load_keys,
    write_key,
)

log = logging.getLogger(__name__)

KeyState = Literal["pending", "active", "retired", "expired"]


class NoActiveKey(BrokerError):
    """Nothing may sign yet: the keys directory is empty or holds only pending keys."""

    # People see the generic text; operators get the remedy in the log (and from `broker check-config`).
    default_description = "The broker cannot sign tokens right now. Please try again later."


@dataclass(frozen=True)
class KeyInfo:
    kid: str
    alg: str
    activate_at: float
    created_at: float | None
    path: Path


@dataclass(frozen=True)
class KeyStatus:
    kid: str
    alg: str
    activate_at: float
    created_at: float | None
    state: KeyState
    retired_at: float | None = None  # set for retired and expired keys
    expires_at: float | None = None  # when a retired key leaves the JWKS; set for retired and expired keys


def _info(key: SigningKey) -> KeyInfo:
    return KeyInfo(kid=key.kid, alg=key.alg, activate_at=key.activate_at, created_at=key.created_at,
                   path=key.path)


def _ordered(keys: Sequence[SigningKey]) -> list[SigningKey]:
    # The kid breaks ties so that replicas order keys with equal activation times the same way.
    return sorted(keys, key=lambda k: (k.activate_at, k.kid))


def _successors(keys: Sequence[SigningKey]) -> dict[str, SigningKey | None]:
    """Each key's successor: the next key of the same algorithm in activation order, by kid."""
    following: dict[str, SigningKey | None] = {}
    latest: dict[str, SigningKey] = {}
    for key in reversed(_ordered(keys)):
        following[key.kid] = latest.get(key.alg)
        latest[key.alg] = key
    return following


def key_states(keys: Sequence[SigningKey], now: float, *,
               retention: float) -> list[tuple[SigningKey, KeyStatus]]:
    """Each key with its status at `now`, in activation order; retention = token lifetime + JWKS max-age."""
    ordered = _ordered(keys)
    successors = _successors(ordered)
    result: list[tuple[SigningKey, KeyStatus]] = []
    for key in ordered:
        successor = successors[key.kid]
        retired_at = expires_at = None
        state: KeyState
        if key.activate_at > now:
            state = "pending"
        elif successor is None or successor.activate_at > now:
            state = "active"
        else:
            retired_at = successor.activate_at
            expires_at = retired_at + retention
            state = "expired" if now >= expires_at else "retired"
        result.append((key, KeyStatus(kid=key.kid, alg=key.alg, activate_at=key.activate_at,
                                      created_at=key.created_at, state=state, retired_at=retired_at,
                                      expires_at=expires_at)))
    return result


def _boundaries(keys: Sequence[SigningKey], retention: float) -> list[float]:
    """Every instant at which some key changes state."""
    instants = {key.activate_at for key in keys}
    instants.update(successor.activate_at + retention for successor in _successors(keys).values() if successor)
    return sorted(instants)


@dataclass(frozen=True)
class _View:
    """The key ring's answer for every instant in [start, end)."""

    start: float
    end: float
    signers: dict[str, SigningKey]  # the active key of each algorithm
    published: dict[str, SigningKey]
    jwks: JwksDocument


class KeyRing:
    """Keys loaded from a directory, with the rotation rules applied at the clock's current instant."""

    def __init__(self, keys_dir: Path | str, *, clock: Clock, max_token_lifetime: int, jwks_max_age: int,
                 rescan_interval: float | None = 1.0, alg: str | None = None) -> None:
        """Load every key (ConfigError on a bad file); rescan_interval=None disables automatic rescans.

        `alg`: the algorithm signing_key() signs with when asked for none (the broker's; None: whichever active
        key activated last)."""
        self.keys_dir = Path(keys_dir)
        self.alg = alg
        self.max_token_lifetime = max_token_lifetime
        self.jwks_max_age = jwks_max_age
        self._clock = clock
        self._retention = max_token_lifetime + jwks_max_age
        self._rescan_interval = rescan_interval
        self._parsed: ParseCache = {}
        self._fingerprint = fingerprint(self.keys_dir)
        self._keys = load_keys(self.keys_dir, self._parsed)
        self._checked_at = clock.now()
        self._view: _View | None = None
        self._documents: dict[tuple[str, ...], JwksDocument] = {}

    def __repr__(self) -> str:
        return f"KeyRing({str(self.keys_dir)!r}, keys={len(self._keys)})"

    def reload_if_changed(self) -> bool:
        """Reparse the directory if its key files changed since the last look; True when the keys changed.

        A broken directory (say, a half-copied key) is logged and the previous keys stay in use; it is
        retried when the files change again, not on every call.
        """
        self._checked_at = self._clock.now()
        current = fingerprint(self.keys_dir)
        if current == self._fingerprint:
            return False
        self._fingerprint = current
        try:
            keys = load_keys(self.keys_dir, self._parsed)
        except ConfigError as exc:
            log.error("keys directory %s has problems, keeping the previous keys: %s", self.keys_dir,
                      "; ".join(exc.problems))
            return False
        self._keys = keys
        self._view = None
        return True

    def _current(self) -> _View:
        now = self._clock.now()
        interval = self._rescan_interval
        if interval is not None and abs(now - self._checked_at) >= interval:
            self.reload_if_changed()
        view = self._view
        if view is None or not view.start <= now < view.end:
            view = self._view = self._compute(now)
        return view

    def _compute(self, now: float) -> _View:
        boundaries = _boundaries(self._keys, self._retention)
        start = max((b for b in boundaries if b <= now), default=-math.inf)
        end = min((b for b in boundaries if b > now), default=math.inf)
        signers: dict[str, SigningKey] = {}
        published: dict[str, SigningKey] = {}
        for key, status in key_states(self._keys, now, retention=self._retention):
            if status.state == "active":
                signers[key.alg] = key
            if status.state != "expired":
                published[key.kid] = key
        signer = self._default_signer(signers)
        # The default signer first (for clients that take the first key), then newest first.
        order = sorted(published.values(), key=lambda k: (k is not signer, -k.activate_at, k.kid))
        kids = tuple(key.kid for key in order)
        document = self._documents.get(kids)
        if document is None:
            if len(self._documents) > 32:
                self._documents.clear()
            document = self._documents[kids] = JwksDocument.build((k.jwk for k in order), self.jwks_max_age)
        return _View(start=start, end=end, signers=signers, published=published, jwks=document)

    def _default_signer(self, signers: dict[str, SigningKey]) -> SigningKey | None:
        if self.alg is not None:
            return signers.get(self.alg)
        return max(signers.values(), key=lambda k: (k.activate_at, k.kid), default=None)

    def signing_key(self, alg: str | None = None) -> SigningKey:
        """The key that signs now with `alg` (default: the ring's algorithm); NoActiveKey if there is none."""
        signers = self._current().signers
        signer = signers.get(alg) if alg is not None else self._default_signer(signers)
        if signer is None:
            wanted = alg or self.alg
            named = f" {wanted}" if wanted else ""
            raise NoActiveKey(log_detail=f"no active{named} signing key in {self.keys_dir}; run "
                                         f"`broker keys new{' --alg ' + wanted if wanted else ''}`")
        return signer

    def verification_key(self, kid: str) -> SigningKey | None:
        """The published key with this kid (pending, active or retired-not-expired), or None."""
        return self._current().published.get(kid)

    def jwks(self) -> JwksDocument:
        """The JWKS to serve now: every published key; the same object while nothing changes."""
        return self._current().jwks

    def statuses(self) -> list[KeyStatus]:
        return [status for _, status in key_states(self._keys, self._clock.now(), retention=self._retention)]


def create_key(keys_dir: Path | str, *, alg: str = "ES256", activate_at: float | None = None, clock: Clock,
               jwks_max_age: int) -> KeyInfo:
    """Write a new key. Default activation: now if no key of its algorithm is active, else once every JWKS cache
    has it.

    An explicit activate_at is rounded down to whole seconds and must be later than every existing key's of the
    same algorithm, otherwise the new key would never sign.
    """
    if alg not in ALGORITHMS:
        raise ConfigError([f"alg: unsupported algorithm {alg!r}; choose one of {', '.join(ALGORITHMS)}"])
    directory = Path(keys_dir)
    keys = [key for key in load_keys(directory) if key.alg == alg]
    now = clock.now()
    taken = {key.activate_at for key in keys}
    if activate_at is None:
        active = any(key.activate_at <= now for key in keys)
        activate = float(math.floor(now) if not active else math.ceil(now) + jwks_max_age)
        while activate in taken:  # two keys at one instant: one of them would never sign
            activate += 1
    else:
        activate = float(math.floor(activate_at))
        latest = max(taken, default=-math.inf)
        if activate <= latest:
            raise ConfigError([f"activate_at: must be later than the newest existing {alg} key's activation "
                               f"({latest:.0f}), otherwise the new key would never sign"])
    return _info(write_key(directory, alg=alg, activate_at=activate, created_at=now))


def list_keys(keys_dir: Path | str, *, clock: Clock, max_token_lifetime: int,
              jwks_max_age: int) -> list[KeyStatus]:
    """Every key in the directory with its state now, in activation order."""
    keys = load_keys(Path(keys_dir))
    states = key_states(keys, clock.now(), retention=max_token_lifetime + jwks_max_age)
    return [status for _, status in states]


def prune_keys(keys_dir: Path | str, *, clock: Clock, max_token_lifetime: int,
               jwks_max_age: int) -> list[str]:
    """Delete the files of expired keys; returns their kids. Other keys are never touched."""
    keys = load_keys(Path(keys_dir))
    removed: list[str] = []
    for key, status in key_states(keys, clock.now(), retention=max_token_lifetime + jwks_max_age):
        if status.state == "expired":
            delete_key(key)
            removed.append(key.kid)
    return removed
