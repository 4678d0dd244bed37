"""Where a browser may be sent after login: exact origins on the allowlist, checked after normalisation."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from broker.errors import InvalidReturnUrl

DEFAULT_PORTS = {"http": 80, "https": 443}
# A host as it must appear: DNS labels or an IPv4 literal, or a bracketed IPv6 literal. Anything else
# (percent-encoding, unicode, userinfo, stray characters) is refused rather than guessed at.
HOST_PATTERN = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")
MAX_LENGTH = 2048


@dataclass(frozen=True)
class _Origin:
    scheme: str
    host: str
    port: int


@dataclass(frozen=True)
class _Allowed:
    origin: _Origin
    path: str  # a path prefix that ends with "/"


def _origin_of(url: str) -> tuple[_Origin, str, str, str]:
    """Split an absolute URL strictly; raise InvalidReturnUrl for anything ambiguous."""
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed or invalid "[" IPv6 literal: "http://["
        raise InvalidReturnUrl(log_detail="unparseable") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidReturnUrl(log_detail="scheme")
    netloc = parts.netloc
    if not netloc or "@" in netloc or "%" in netloc:
        raise InvalidReturnUrl(log_detail="authority")
    try:
        port = parts.port
    except ValueError:
        raise InvalidReturnUrl(log_detail="port") from None
    host = (parts.hostname or "").lower()
    if host.startswith("[") or ":" in host:
        ipv6 = True
    else:
        ipv6 = False
        if not HOST_PATTERN.fullmatch(host):
            raise InvalidReturnUrl(log_detail="host")
    if not ipv6 and not host:
        raise InvalidReturnUrl(log_detail="host")
    origin = _Origin(scheme, host, port if port is not None else DEFAULT_PORTS[scheme])
    return origin, parts.path or "/", parts.query, parts.fragment


class ReturnUrlPolicy:
    """Checks `return_to` values. Relative paths ("/x", never "//x") resolve against the broker's own origin."""

    def __init__(self, issuer: str, allowed: tuple[str, ...]) -> None:
        self.issuer = issuer.rstrip("/")
        self.default = self.issuer + "/"
        entries = (self.issuer, *allowed)
        self._allowed: list[_Allowed] = []
        for entry in entries:
            origin, path, _, _ = _origin_of(entry)
            self._allowed.append(_Allowed(origin, path if path.endswith("/") else path + "/"))

    def check(self, raw: str | None) -> str:
        """The normalised URL to redirect to, or InvalidReturnUrl. Empty means the broker's home page."""
        if raw is None or raw == "":
            return self.default
        if len(raw) > MAX_LENGTH or any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in raw):
            # Browsers drop tabs and newlines inside URLs, so "/\t/evil.com" becomes "//evil.com".
            raise InvalidReturnUrl(log_detail="control or whitespace character")
        if "\\" in raw or "%5c" in raw.lower():
            # Browsers read "\" as "/" in the authority: "/\evil.com" and "https:\\evil.com" escape.
            raise InvalidReturnUrl(log_detail="backslash")
        if raw.startswith("/"):
            if raw.startswith("//"):
                raise InvalidReturnUrl(log_detail="scheme-relative")
            raw = self.issuer + raw
        elif not re.match(r"^https?://", raw, re.IGNORECASE):
            raise InvalidReturnUrl(log_detail="not absolute")
        origin, path, query, fragment = _origin_of(raw)
        if _has_dot_segments(path):
            raise InvalidReturnUrl(log_detail="dot segments")
        for allowed in self._allowed:
            if allowed.origin == origin and (path + "/").startswith(allowed.path):
                return self._rebuild(origin, path, query, fragment)
        raise InvalidReturnUrl(log_detail="origin or path not on the allowlist")

    @staticmethod
    def _rebuild(origin: _Origin, path: str, query: str, fragment: str) -> str:
        default = DEFAULT_PORTS[origin.scheme] == origin.port
        host = origin.host if ":" not in origin.host else f"[{origin.host}]"
        netloc = host if default else f"{host}:{origin.port}"
        return urlunsplit((origin.scheme, netloc, path, query, fragment))


def _has_dot_segments(path: str) -> bool:
    # "/app/../admin" would leave an allowed path prefix after the browser resolves it.
    return any(segment in (".", "..") or segment.lower() in ("%2e", "%2e%2e", ".%2e", "%2e.")
               for segment in path.split("/"))
