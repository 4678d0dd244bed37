"""Logging: one JSON object per line (`serve`) or one readable line (`dev`), the request id on every line, and a
last-line scrub of anything token-like."""

from __future__ import annotations

import contextvars
import json
import logging
import re
from datetime import UTC, datetime

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

# A safety net, not the policy (the policy is: never log a credential). Broker JWTs, TikTok tokens, broker
# refresh tokens and session cookies have recognisable shapes; a line that slips one in gets it masked.
_SECRET_SHAPES = re.compile(
    r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # JWTs
    r"|\b(?:act|rft|clt)\.[A-Za-z0-9!*._~-]{8,}"  # TikTok tokens
    r"|\bbrt1\.[A-Za-z0-9._-]{20,}"  # broker refresh tokens
    r"|\b[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}\b"  # session cookies and authorization codes
)
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def scrub(text: str) -> str:
    return _SECRET_SHAPES.sub("[redacted]", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        current = request_id.get()
        if current:
            entry["request_id"] = current
        for key, value in _extras(record).items():
            entry[key] = scrub(str(value)) if not isinstance(value, int | float | bool) else value
        if record.exc_info:
            entry["error"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {key: value for key, value in vars(record).items() if key not in _STANDARD and not key.startswith("_")}


class ReadableFormatter(logging.Formatter):
    """For a person at a terminal (`broker dev`): `12:04:31 warning broker.login: message  key=value`."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        line = f"{when} {record.levelname.lower():<7} {record.name}: {scrub(record.getMessage())}"
        fields = {**({"request_id": request_id.get()} if request_id.get() else {}), **_extras(record)}
        if fields:
            line += "  " + " ".join(f"{key}={scrub(str(value))}" for key, value in fields.items())
        if record.exc_info:
            line += "\n" + scrub(self.formatException(record.exc_info))
        return line


def configure(level: int = logging.INFO, *, readable: bool = False) -> None:
    """JSON lines for machines (the default, what `broker serve` logs), or readable lines for a terminal."""
    handler = logging.StreamHandler()
    handler.setFormatter(ReadableFormatter() if readable else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # At DEBUG these print request headers and bodies, TikTok's Authorization among them: never below WARNING.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
