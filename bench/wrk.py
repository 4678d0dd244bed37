"""wrk (Debian's package) as a load generator: C and epoll, so it takes less of the shared cores than ours.

Used where the generator's own CPU would distort the figure most (several server workers on two cores).
Closed loop like bench/loadgen.py: `connections` keep-alive connections on `threads` threads for `seconds`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
PERCENTILE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    bad: int  # non-2xx/3xx responses plus socket errors


def available() -> bool:
    return shutil.which("wrk") is not None


def parse(output: str) -> WrkResult:
    rate = RATE.search(output)
    if rate is None:
        raise RuntimeError(f"wrk printed no rate:\n{output[-1000:]}")
    latency = {int(q): float(v) * UNITS[unit] for q, v, unit in PERCENTILE.findall(output)}
    bad = int(m.group(1)) if (m := NON_2XX.search(output)) else 0
    if m := ERRORS.search(output):
        bad += sum(int(group) for group in m.groups())
    return WrkResult(float(rate.group(1)), latency.get(50, float("nan")), latency.get(99, float("nan")), bad)


def run(url: str, *, headers: Mapping[str, str], seconds: float, connections: int, threads: int = 1) -> WrkResult:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
               "--timeout", "10s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    done = subprocess.run([*command, url], capture_output=True, text=True, timeout=seconds + 30, check=True)
    return parse(done.stdout)
