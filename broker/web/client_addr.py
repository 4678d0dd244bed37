"""Who is calling and what they asked for, believing forwarding headers only from trusted proxies.

The TCP peer (the ASGI scope's client; uvicorn never rewrites it, see broker.cli) is the only fact. When it is
in BROKER_TRUSTED_PROXIES, its X-Forwarded-For is walked from the right: every trusted address is a proxy of
ours, and the first untrusted one is the client (earlier entries were written by the client itself and prove
nothing). Its X-Forwarded-Proto/-Host/-Uri/-Method and X-Original-URL describe the request a gateway is asking
about. An untrusted peer's forwarding headers are ignored entirely. `Forwarded` (RFC 7239) is not read: none of
the gateways we ship configurations for relies on it.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.requests import Request

from broker.config import IPNetwork
from broker.web.services import services

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# A host[:port] as it may appear in a URL: DNS name or IPv4, or a bracketed IPv6 literal.
HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")
METHOD = re.compile(r"^[A-Z]{3,10}$")
SCOPE_KEY = "broker.forwarded"
MAX_ADDRESS_TEXT = 64  # "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255%zone]:65535" is 59


@dataclass(frozen=True)
class Forwarded:
    """What the broker believes about a request: the client's address and, from a trusted gateway, the
    original request it is checking (None where nobody trusted said)."""

    client_ip: str
    peer_trusted: bool
    proto: str | None = None
    host: str | None = None
    uri: str | None = None
    method: str | None = None
    original_url: str | None = None


def parse_address(text: str) -> IPAddress | None:
    """An address as proxies write it: bare, `1.2.3.4:port`, or `[v6]` with or without a port; else None."""
    text = text.strip()
    # Longer than any address with a port and a zone: not one, and never a key of the cache (a header line
    # may be megabytes long).
    return _parsed(text) if len(text) <= MAX_ADDRESS_TEXT else None


@functools.lru_cache(maxsize=4096)  # the same few peers and proxies call over and over; parsing costs ~10 µs
def _parsed(text: str) -> IPAddress | None:
    if text.startswith("["):
        text = text[1:text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
    return address


def _trusted(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in networks)


def client_address(peer: str, forwarded_for: Sequence[str], networks: Sequence[IPNetwork]) -> tuple[str, bool]:
    """(the client's address, whether the peer is trusted), from the peer and its X-Forwarded-For lines."""
    peer_address = parse_address(peer)
    if peer_address is None:
        return peer, False
    if not _trusted(peer_address, networks):
        return str(peer_address), False
    client = peer_address
    hops = [hop for line in forwarded_for for hop in line.split(",")]
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            break  # garbage from a trusted proxy: the client is unknown, so it is that proxy
        client = address
        if not _trusted(address, networks):
            break
    return str(client), True


def _last(values: Sequence[str], *, split: bool = True) -> str | None:
    """The value the nearest proxy wrote: the last header line and, for list-valued headers, its last item."""
    if not values:
        return None
    value = values[-1].split(",")[-1] if split else values[-1]
    return value.strip() or None


def forwarded(request: Request) -> Forwarded:
    """The request as the broker understands it; computed once per request."""
    cached = request.scope.get(SCOPE_KEY)
    if isinstance(cached, Forwarded):
        return cached
    networks = services(request).settings.trusted_proxies
    headers = request.headers
    peer = request.client.host if request.client else ""
    ip, trusted = client_address(peer, headers.getlist("x-forwarded-for"), networks)
    view = Forwarded(ip, trusted)
    if trusted:
        proto = (_last(headers.getlist("x-forwarded-proto")) or "").lower()
        host = _last(headers.getlist("x-forwarded-host"))
        uri = _last(headers.getlist("x-forwarded-uri"), split=False)
        method = (_last(headers.getlist("x-forwarded-method")) or "").upper()
        view = Forwarded(ip, trusted, proto=proto if proto in ("http", "https") else None,
                         host=host if host and HOST.fullmatch(host) else None,
                         uri=uri if uri and uri.startswith("/") else None,
                         method=method if METHOD.fullmatch(method) else None,
                         original_url=_last(headers.getlist("x-original-url"), split=False))
    request.scope[SCOPE_KEY] = view
    return view


def client_ip(request: Request) -> str:
    return forwarded(request).client_ip
