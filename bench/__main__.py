"""`python -m bench` (`make bench`): run every figure, print the tables, write bench/results/latest.json."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import machine
from bench.config import BenchConfig
from bench.figures import FIGURES
from bench.report import figure_document, render, render_machine, write_json
from bench.stack import Stack

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", action="append", choices=[f.name for f in FIGURES],
                        help="run only this figure (repeatable)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run; numbers not worth quoting")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    config = BenchConfig().quick() if args.quick else BenchConfig()
    selected = [f for f in FIGURES if not args.only or f.name in args.only]
    started, when = time.monotonic(), datetime.now(UTC)
    described = machine.describe()
    print(f"tiktok-broker benchmarks, {when:%Y-%m-%d %H:%M} UTC{' (quick run)' if args.quick else ''}")
    print(render_machine(described), end="\n\n", flush=True)
    figures: dict[str, Any] = {}
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="broker-bench-") as tmp, Stack(Path(tmp)) as stack:
        for figure in selected:
            print(f"running {figure.name}: {figure.description} ...", file=sys.stderr, flush=True)
            try:
                result = figure.run(stack, config)
            except Exception as exc:
                traceback.print_exc()
                failed.append(figure.name)
                figures[figure.name] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            for table in result.tables:
                print(render(table), end="\n\n", flush=True)
            figures[figure.name] = figure_document(result)
    elapsed = time.monotonic() - started
    write_json(args.output, {"date": when.isoformat(timespec="seconds"), "quick": args.quick,
                             "duration_s": round(elapsed, 1), "machine": described, "config": vars(config),
                             "figures": figures})
    print(f"done in {elapsed:.0f} s; results in {args.output}")
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
