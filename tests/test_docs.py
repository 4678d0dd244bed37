"""The docs agree with the code: every variable the broker reads, every route and every command (with each of its
options) is in docs/reference.md; nothing in the docs names a variable, route or option the code does not have;
and the defaults the reference states are the code's."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.cli import build_parser
from broker.config import Settings, load_settings
from broker.web.routes import ROUTES

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "reference.md"
# Every page a reader may follow; each BROKER_* variable named there must exist.
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), ROOT / "sdk" / "README.md",
         ROOT / "emulator" / "README.md", *sorted((ROOT / "deploy").rglob("*.yml")),
         *sorted((ROOT / "deploy").rglob("*.md"))]
VARIABLE = re.compile(r"`(BROKER_[A-Z0-9_]+)`((?:\s*/\s*`(?:BROKER)?_[A-Z0-9_]+`)*)")
# Read outside load_settings: the redis-server binary an embedded Redis runs (tests and `broker dev`).
READ_ELSEWHERE = {"BROKER_REDIS_SERVER_BIN"}


class RecordingEnviron(dict[str, str]):
    """An empty environment that remembers every name the settings loader asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)


def variables_read() -> set[str]:
    environ = RecordingEnviron()
    load_settings(environ)
    return {name for name in environ.asked if name.startswith("BROKER_")} | READ_ELSEWHERE


def section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    following = text.find("\n## ", start + 1)
    return text[start:following if following != -1 else len(text)]


def expand(match: re.Match[str]) -> list[str]:
    """`BROKER_RATE_LIMIT_LOGIN` / `_OAUTH`: a short form replaces as many trailing words of the full name."""
    full, others = match.group(1), re.findall(r"`((?:BROKER)?_[A-Z0-9_]+)`", match.group(2) or "")
    names = [full]
    for other in others:
        words = other.strip("_").split("_")
        names.append(other if other.startswith("BROKER_") else "_".join(full.split("_")[: -len(words)] + words))
    return names


def cells(line: str) -> list[str]:
    """The cells of a Markdown table row (a pipe escaped as \\| belongs to its cell)."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def documented_rows() -> Iterator[tuple[list[str], str]]:
    """(variables, default cell) of each row of the reference's configuration table."""
    for line in section(REFERENCE.read_text(), "Configuration").splitlines():
        row = cells(line)
        if len(row) >= 3 and row[0].startswith("`BROKER_"):
            match = VARIABLE.match(row[0])
            assert match, line
            yield expand(match), row[1]


def test_every_variable_the_broker_reads_is_in_the_reference() -> None:
    documented = {name for names, _ in documented_rows() for name in names}
    assert variables_read() - documented == set(), "read by the code but missing from docs/reference.md"
    assert documented - variables_read() == set(), "in docs/reference.md but never read by the code"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_no_page_names_a_variable_that_does_not_exist(page: Path) -> None:
    named = {name for match in VARIABLE.finditer(page.read_text()) for name in expand(match)}
    named |= set(re.findall(r"\b(BROKER_[A-Z0-9_]*[A-Z0-9])\b", page.read_text()))
    unknown = {name for name in named if name != "BROKER_" and name not in variables_read()}
    assert unknown == set()


def _default(settings: Settings, variable: str) -> object:
    return getattr(settings, variable.removeprefix("BROKER_").lower(), None)


def test_stated_defaults_are_the_codes() -> None:
    defaults = Settings()
    checked = 0
    for names, cell in documented_rows():
        stated = re.findall(r"`([^`]*)`", cell)
        if len(stated) != len(names):
            continue  # prose ("none", "the issuer", "see rate limits"): nothing exact to compare
        for name, text in zip(names, stated, strict=True):
            if text.startswith("BROKER_"):
                continue  # the default is another variable's value
            value = _default(defaults, name)
            if isinstance(value, bool):
                assert text in (("on", "true") if value else ("off", "false")), name
            elif isinstance(value, int | float | str):
                assert text == str(value) or (isinstance(value, float) and float(text) == value), name
            elif isinstance(value, Path):
                assert text == str(value), name
            elif isinstance(value, tuple) and all(isinstance(item, str) for item in value):
                assert text == ",".join(value), name
            else:
                continue
            checked += 1
    assert checked >= 15  # the check keeps its teeth if the table changes shape


def route_paths() -> set[str]:
    return {route.path.replace(":path}", "}") for route in ROUTES}  # type: ignore[attr-defined]


def test_every_route_is_in_the_reference_and_nothing_else() -> None:
    endpoints = section(REFERENCE.read_text(), "Endpoints")
    mentioned = set(re.findall(r"(?<![\w.])(/[A-Za-z0-9_./{}-]*)", " ".join(re.findall(r"`([^`]*)`", endpoints))))
    missing = {path for path in route_paths() if path not in mentioned}
    assert missing == set(), "routes missing from the reference's endpoints"
    unknown = {path for path in mentioned if path not in route_paths()}
    assert unknown == set(), "endpoints in the reference that the route table does not have"


def commands() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """("broker keys new", its parser) for every command and subcommand of the CLI."""
    def walk(prefix: str, parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
        subparsers = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
        if not subparsers:
            yield prefix, parser
        for action in subparsers:
            for name, child in action.choices.items():
                yield from walk(f"{prefix} {name}", child)

    yield from walk("broker", build_parser())


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings if flag.startswith("--")} - {
        "--help"}


def command_rows() -> dict[str, str]:
    """Each row of the reference's command table, by every command it documents (`a` / `b` rows name two)."""
    rows: dict[str, str] = {}
    for line in section(REFERENCE.read_text(), "Commands").splitlines():
        row = cells(line)
        if not row or "`broker " not in row[0]:
            continue
        for usage in re.findall(r"`(broker [^`]*)`", row[0]):
            name = " ".join(word for word in usage.split() if re.fullmatch(r"[a-z][a-z-]*", word))
            rows[name] = usage
    return rows


def test_every_command_and_option_is_in_the_reference_and_nothing_else() -> None:
    rows = command_rows()
    for name, parser in commands():
        usage = next((text for documented, text in rows.items() if documented == name), None)
        assert usage is not None, f"`{name}` is missing from the reference's commands"
        assert options(parser) <= set(re.findall(r"--[a-z-]+", usage)), f"options of `{name}` not documented"
        assert set(re.findall(r"--[a-z-]+", usage)) <= options(parser), f"`{name}` has no such option"
    assert set(rows) <= {name for name, _ in commands()}, "commands in the reference that the CLI does not have"
