"""Redirect URI rules: what may be registered (contract §2.3) and whether a requested URI matches."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost"})
MAX_LENGTH = 512
_WILDCARD_PORT = ":*"


def registration_problem(uri: str, platform: str) -> str | None:
    """Why TikTok (or, for the loopback deviation, the emulator) would refuse to register `uri`."""
    if len(uri) >= MAX_LENGTH:
        return f"must be shorter than {MAX_LENGTH} characters"
    if "?" in uri or "#" in uri:
        return "must not contain a query string or fragment"
    wildcard = _WILDCARD_PORT in uri
    try:
        parts = urlsplit(uri.replace(_WILDCARD_PORT, ":1", 1) if wildcard else uri)
        port = parts.port
    except ValueError:
        return "is not a valid absolute URL"
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        return "must be an absolute http(s) URL"
    if platform == "desktop":
        if host not in LOOPBACK_HOSTS:
            return "desktop apps may only register localhost or 127.0.0.1"
        if port is None:
            return "desktop redirect URIs need a port (or '*')"
        return None
    if wildcard:
        return "port wildcards are only allowed for desktop apps"
    # Deviation from TikTok: web apps here may also register http loopback URIs (local development).
    if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
        return "web apps must use https (http is accepted only for localhost/127.0.0.1)"
    return None


def sdk_registration_problem(uri: str) -> str | None:
    """Why TikTok would refuse `uri` as an iOS or Android redirect URI: an https universal link or app link."""
    if len(uri) >= MAX_LENGTH:
        return f"must be shorter than {MAX_LENGTH} characters"
    if "?" in uri or "#" in uri:
        return "must not contain a query string or fragment"
    parts = urlsplit(uri)
    if parts.scheme != "https" or not parts.hostname:
        return "iOS and Android apps must register an https URL with a host (a universal link or app link)"
    return None


def _pattern(registered: str) -> re.Pattern[str]:
    head, _, tail = registered.partition(_WILDCARD_PORT)
    return re.compile(re.escape(head) + r":[0-9]{1,5}" + re.escape(tail))


def is_registered(uri: str, registered: tuple[str, ...], platform: str) -> bool:
    """Exact string match (trailing slash included); desktop `:*` registrations match any port."""
    for candidate in registered:
        if uri == candidate:
            return True
        if platform == "desktop" and _WILDCARD_PORT in candidate and _pattern(candidate).fullmatch(uri):
            return True
    return False
