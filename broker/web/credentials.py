"""Credentials as they arrive in the Authorization header: a client's Basic pair, or a bearer token."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote

from starlette.requests import Request

from broker.errors import InvalidClient

_PARSED = "broker.basic_credentials"


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """(client_id, secret) from `Authorization: Basic` (RFC 6749 section 2.3.1: each form-urlencoded), None
    when the header names another scheme; InvalidClient when it is Basic but unreadable. A readable answer is
    kept in the request's scope: the rate limiter and the client's authentication both ask."""
    if _PARSED in request.scope:
        parsed: tuple[str, str] | None = request.scope[_PARSED]
        return parsed
    request.scope[_PARSED] = parsed = _basic(request.headers.get("authorization", ""))
    return parsed


def _basic(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidClient("Malformed Basic credentials.") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise InvalidClient("Malformed Basic credentials.")
    return unquote(client_id), unquote(secret)


def bearer_token(request: Request) -> str | None:
    """The token of `Authorization: Bearer <token>`, None for any other header or none."""
    return bearer_in(request.headers.get("authorization", ""))


def bearer_in(header: str) -> str | None:
    """The token of an Authorization header's value `Bearer <token>`, None for any other scheme."""
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None
