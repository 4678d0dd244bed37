"""What a figure is: a name, a one-line description, and a function from the stack to its results."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.config import BenchConfig
from bench.report import FigureResult
from bench.stack import Stack


@dataclass(frozen=True)
class Figure:
    name: str
    description: str
    run: Callable[[Stack, BenchConfig], FigureResult]
