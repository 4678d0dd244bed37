"""What the numbers were measured on: printed above the tables and stored in the JSON."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.serving import server_stack
from broker.store.embedded import find_redis_server

PACKAGES = ("starlette", "uvicorn", "uvloop", "httptools", "hiredis", "httpx", "redis", "PyJWT", "cryptography")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _redis_version() -> str:
    try:
        binary = find_redis_server()
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except Exception as exc:  # a missing binary is reported, the figures that need it will fail on their own
        return f"unavailable ({exc})"
    return out.stdout.strip() or out.stderr.strip()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def describe() -> dict[str, Any]:
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    load1, load5, _ = os.getloadavg()
    stack = server_stack()
    return {
        "cpu": f"{_cpu_model()}, {cores} logical cores ({usable} usable)",
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "redis-server": _redis_version(),
        "packages": ", ".join(f"{p} {_version(p)}" for p in PACKAGES),
        "server stack": f"{stack['loop']} loop, {stack['http']} parser, Redis replies by {stack['redis_parser']} "
                        "(every server: `broker serve` and the bare app alike)",
        "load average at start": f"{load1:.2f} {load5:.2f}",
    }
