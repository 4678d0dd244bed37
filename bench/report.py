"""Result types, the plain-text tables printed to stdout, and the JSON file written for machines."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

NUMERIC = re.compile(r"-|[-+]?[\d,]*\.?\d+x?(\.\.[\d,]*\.?\d+x?)?")


@dataclass(frozen=True)
class Table:
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class FigureResult:
    name: str
    tables: tuple[Table, ...]
    data: dict[str, Any] = field(default_factory=dict)


def num(value: float, digits: int = 1) -> str:
    """A number for a table cell: fixed digits, thousands separators, '-' for NaN."""
    if math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def ratio(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}x"


def _numeric(cell: str) -> bool:
    return NUMERIC.fullmatch(cell) is not None


def spread(values: Sequence[float]) -> str:
    """The range of per-round ratios, to judge how far a median can be trusted."""
    finite = [v for v in values if not math.isnan(v)]
    return f"{min(finite):.2f}..{max(finite):.2f}" if finite else "-"


def render(table: Table) -> str:
    widths = [len(h) for h in table.headers]
    for row in table.rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    # Numbers right-aligned, text (labels, breakdowns) left-aligned.
    right = [all(_numeric(row[i]) for row in table.rows) for i in range(len(widths))]

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)]
        return "  ".join(parts).rstrip()

    out = [table.title, line(table.headers), line(["-" * w for w in widths])]
    out += [line(row) for row in table.rows]
    out += [f"  * {note}" for note in table.notes]
    return "\n".join(out)


def render_machine(machine: dict[str, Any]) -> str:
    width = max(len(key) for key in machine)
    return "\n".join(f"{key.ljust(width)}  {value}" for key, value in machine.items())


def _clean(value: Any) -> Any:
    """JSON has no NaN: write null instead."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_clean(document), indent=2, ensure_ascii=False) + "\n")
    tmp.replace(path)


def figure_document(result: FigureResult) -> dict[str, Any]:
    return {"tables": [asdict(t) for t in result.tables], **result.data}
