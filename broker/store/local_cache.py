"""A per-process cache of Redis reads, each entry dropped the moment Redis reports a write to a key it read.

Use: `get(name)` first; on a miss take a ticket (`with reading(keys) as ticket:`) naming every Redis key the
read depends on, do the read, then `put(ticket, name, value)`. An invalidation of any of those keys that
arrives while the read is in flight spoils the ticket, so a value that may already be stale is never stored
(the usual client-side caching race). Nothing is served or stored unless the invalidation listener is live;
when it is not, every call goes to Redis exactly as without a cache.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

V = TypeVar("V")


class Liveness(Protocol):
    @property
    def live(self) -> bool: ...

    @property
    def generation(self) -> int: ...


class _NeverLive:
    live = False
    generation = 0


def disabled_cache() -> TrackedCache[V]:
    """A cache that never serves nor stores: the behaviour of a process without invalidations."""
    return TrackedCache(_NeverLive(), 0)


@dataclass(eq=False)
class Ticket:
    keys: tuple[str, ...]
    generation: int
    spoiled: bool = False


@dataclass
class _Entry(Generic[V]):
    value: V
    keys: tuple[str, ...] = field(default=())


class TrackedCache(Generic[V]):
    def __init__(self, listener: Liveness, max_entries: int) -> None:
        self._listener = listener
        self._max_entries = max_entries
        self._entries: OrderedDict[str, _Entry[V]] = OrderedDict()
        self._by_key: dict[str, set[str]] = {}  # Redis key -> names of the entries that read it
        # Redis key -> reads in flight that depend on it (a set: many requests read one user's keys at once).
        self._pending: dict[str, set[Ticket]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def enabled(self) -> bool:
        return self._max_entries > 0 and self._listener.live

    def get(self, name: str) -> V | None:
        if not self.enabled:
            return None
        entry = self._entries.get(name)
        if entry is None:
            return None
        self._entries.move_to_end(name)
        return entry.value

    def begin(self, keys: Iterable[str]) -> Ticket:
        ticket = Ticket(tuple(keys), self._listener.generation)
        if self._max_entries:  # a cache that stores nothing has no reads to spoil
            for key in ticket.keys:
                self._pending.setdefault(key, set()).add(ticket)
        return ticket

    def put(self, ticket: Ticket, name: str, value: V) -> bool:
        """Store the value read under `ticket`, unless a write may have overtaken it; True if stored."""
        self._release(ticket)
        if ticket.spoiled or ticket.generation != self._listener.generation or not self.enabled:
            return False
        self.drop(name)
        self._entries[name] = _Entry(value, ticket.keys)
        for key in ticket.keys:
            self._by_key.setdefault(key, set()).add(name)
        while len(self._entries) > self._max_entries:
            oldest = next(iter(self._entries))
            self.drop(oldest)
        return True

    @contextlib.contextmanager
    def reading(self, keys: Iterable[str]) -> Iterator[Ticket]:
        """A ticket for one read of these keys, released on the way out whether the value read was `put`, not
        worth keeping, or never read (an error)."""
        ticket = self.begin(keys)
        try:
            yield ticket
        finally:
            self._release(ticket)

    def drop(self, name: str) -> None:
        entry = self._entries.pop(name, None)
        if entry is None:
            return
        for key in entry.keys:
            names = self._by_key.get(key)
            if names is not None:
                names.discard(name)
                if not names:
                    del self._by_key[key]

    def invalidate(self, keys: Iterable[str] | None) -> None:
        if keys is None:
            self._entries.clear()
            self._by_key.clear()
            for tickets in self._pending.values():
                for ticket in tickets:
                    ticket.spoiled = True
            return
        for key in keys:
            for name in self._by_key.pop(key, ()):
                self.drop(name)
            for ticket in self._pending.get(key, ()):
                ticket.spoiled = True

    def _release(self, ticket: Ticket) -> None:
        for key in ticket.keys:
            tickets = self._pending.get(key)
            if tickets is None:
                continue
            tickets.discard(ticket)
            if not tickets:
                del self._pending[key]
