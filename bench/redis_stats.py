"""Redis work between two instants: commands per name from `INFO commandstats` (no MONITOR needed),
round trips from a CountingProxy."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis

from bench.redis_proxy import CountingProxy

# Our own observation command; everything else that runs between two snapshots is the broker's.
IGNORED = frozenset({"info"})


class CommandCounter:
    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url)
        self._client.ping()  # connect (AUTH, HELLO...) now, not inside the first measured window

    def snapshot(self) -> Counter[str]:
        stats: dict[str, Any] = self._client.info("commandstats")
        return Counter({name.removeprefix("cmdstat_"): int(values["calls"]) for name, values in stats.items()
                        if name.removeprefix("cmdstat_") not in IGNORED})

    def close(self) -> None:
        self._client.close()


def difference(after: Counter[str], before: Counter[str]) -> Counter[str]:
    return after - before


@dataclass(frozen=True)
class PerOperation:
    operations: int
    commands: float
    round_trips: float
    by_command: dict[str, float]

    def breakdown(self) -> str:
        return ", ".join(f"{name} {calls:g}" for name, calls in self.by_command.items()) or "none"


@dataclass
class Tally:
    operations: int = 0
    round_trips: int = 0
    commands: Counter[str] = field(default_factory=Counter)

    def per_op(self) -> PerOperation:
        n = max(self.operations, 1)
        return PerOperation(self.operations, sum(self.commands.values()) / n, self.round_trips / n,
                            {name: calls / n for name, calls in sorted(self.commands.items())})


class Meter:
    """Commands (INFO commandstats) and round trips (proxy) between two points in time."""

    def __init__(self, counter: CommandCounter, proxy: CountingProxy) -> None:
        self.counter, self.proxy = counter, proxy

    def point(self) -> tuple[Counter[str], int]:
        return self.counter.snapshot(), self.proxy.round_trips

    def add(self, tally: Tally, start: tuple[Counter[str], int], operations: int = 1) -> None:
        end = self.point()
        tally.operations += operations
        tally.round_trips += end[1] - start[1]
        tally.commands += difference(end[0], start[0])
