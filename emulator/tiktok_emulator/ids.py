"""Identifier minting: token and code strings in TikTok's shapes, log ids, and ids derived from a typed name."""

from __future__ import annotations

import secrets
import string
import time
import uuid

_ALPHANUMERIC = string.ascii_letters + string.digits
# Fixed namespace so a typed display name maps to the same open_id/union_id on every run.
_NAMESPACE = uuid.UUID("6f1d2c3b-4a59-4e87-9d6c-5b4a39281706")


def _opaque(length: int) -> str:
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


def _suffix() -> str:
    # TikTok's tokens end in "!NNNN.va"; the "!" catches clients that forget to form-encode.
    return f"!{secrets.randbelow(10_000):04d}.va"


def access_token() -> str:
    return f"act.{_opaque(48)}{_suffix()}"


def refresh_token() -> str:
    return f"rft.{_opaque(48)}{_suffix()}"


def client_token() -> str:
    return f"clt.{_opaque(48)}{_suffix()}"


def authorization_code() -> str:
    # Real codes carry "*" and "!", which is why the contract says to URL-decode the code once.
    return f"{_opaque(40)}*0{_suffix()}"


def request_id() -> str:
    return secrets.token_urlsafe(18)


def log_id(now: float) -> str:
    """14-digit UTC timestamp followed by random upper-case hex, like TikTok's `log_id`."""
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(now)) + secrets.token_hex(10).upper()


def derived_open_id(client_key: str, display_name: str) -> str:
    """open_id is per app, so the client_key is part of the seed."""
    return str(uuid.uuid5(_NAMESPACE, f"open_id:{client_key}:{display_name}"))


def derived_union_id(display_name: str) -> str:
    """union_id is shared across one developer's apps, so only the person's name seeds it."""
    return str(uuid.uuid5(_NAMESPACE, f"union_id:{display_name}"))
