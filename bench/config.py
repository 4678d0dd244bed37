"""How long and how hard each figure runs; one object so a quick smoke run is one flag away."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class BenchConfig:
    # In-process JWT verification: interleaved pairs of timed batches.
    jwt_rounds: int = 15
    jwt_batch_seconds: float = 0.05
    # HTTP load on loopback: fixed concurrency, fixed duration per round, sides rotated every round.
    http_rounds: int = 7
    http_seconds: float = 3.0
    http_warmup_seconds: float = 0.5
    concurrency: int = 32
    # Open-loop latency: a steady rate well under every side's capacity.
    open_loop_rate: float = 400.0
    open_loop_connections: int = 8
    max_requests_per_round: int = 200_000
    # Logins through the emulator: rounds of sequential logins, and the counted pass.
    login_rounds: int = 7
    logins_per_round: int = 20
    counted_logins: int = 10
    counted_checks: int = 100
    # Refresh-token rotation: the HTTP load above (same rounds, seconds, concurrency), and the counted pass.
    counted_refreshes: int = 100
    counted_grants: int = 10
    # Where a refresh's time goes: in-process, chained refreshes per round.
    share_warmup: int = 300
    share_rounds: int = 7
    share_refreshes: int = 1000
    # The worst-case logout: families asked for from one session, browser sessions, interleaved rounds.
    logout_families: int = 1500
    logout_sessions: int = 1000
    logout_rounds: int = 5

    def quick(self) -> BenchConfig:
        """A smoke run: same shape, a fraction of the time (numbers too noisy to quote)."""
        return replace(self, jwt_rounds=5, jwt_batch_seconds=0.01, http_rounds=2, http_seconds=0.5,
                       http_warmup_seconds=0.2, login_rounds=2, logins_per_round=3, counted_logins=3,
                       counted_checks=20, counted_refreshes=20, counted_grants=3, logout_families=200,
                       logout_sessions=150, logout_rounds=2, share_warmup=20,
                       share_rounds=2, share_refreshes=100)
