"""The client's address and the original request: forwarding headers believed only from trusted proxies."""

from __future__ import annotations

from ipaddress import ip_network

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from broker.config import Settings, load_settings
from broker.errors import ConfigError
from broker.web.client_addr import client_address, forwarded, parse_address

PROXIES = (ip_network("10.0.0.0/8"), ip_network("2001:db8:ffff::/48"))


@pytest.mark.parametrize(("text", "expected"), [
    ("203.0.113.7", "203.0.113.7"), (" 203.0.113.7 ", "203.0.113.7"), ("203.0.113.7:52100", "203.0.113.7"),
    ("2001:db8::1", "2001:db8::1"), ("[2001:db8::1]", "2001:db8::1"), ("[2001:db8::1]:443", "2001:db8::1"),
    ("::ffff:203.0.113.7", "203.0.113.7"), ("unknown", None), ("", None), ("203.0.113.999", None),
    ("[2001:db8::1", None), ("_hidden", None),
])
def test_addresses_are_read_as_proxies_write_them(text: str, expected: str | None) -> None:
    found = parse_address(text)
    assert (str(found) if found is not None else None) == expected


def test_what_a_trusted_proxy_passes_on_is_remembered_only_when_it_could_be_an_address() -> None:
    """Parsed addresses are kept per process (the same peers call all day); a hop written by a client behind a
    trusted proxy may be of any length, and must neither be kept nor be read as an address."""
    from broker.web import client_addr

    client_addr._parsed.cache_clear()
    padded = "10.0.0.1" + " " * 100
    assert parse_address(padded) == parse_address("10.0.0.1") is not None  # surrounding blanks: still the address
    hops = ["10.0.0.2" + "0" * size for size in range(60, 560)]  # 500 distinct hops, none an address
    assert client_address("10.0.0.9", [", ".join(hops)], [ip_network("10.0.0.0/8")]) == ("10.0.0.9", True)
    assert all(parse_address(hop) is None for hop in hops)
    assert client_addr._parsed.cache_info().currsize <= 2
    assert parse_address("[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535") is not None


def test_an_untrusted_peer_is_the_client_whatever_it_claims() -> None:
    assert client_address("203.0.113.7", ["198.51.100.1"], PROXIES) == ("203.0.113.7", False)
    assert client_address("203.0.113.7", [], ()) == ("203.0.113.7", False)
    assert client_address("127.0.0.1", ["198.51.100.1"], ()) == ("127.0.0.1", False)  # trust no one by default


def test_the_client_is_the_rightmost_untrusted_hop() -> None:
    # The client wrote the first two entries itself; our proxies appended the rest.
    chain = ["1.1.1.1, 198.51.100.9, 203.0.113.7", "10.1.2.3"]
    assert client_address("10.0.0.5", chain, PROXIES) == ("203.0.113.7", True)
    assert client_address("10.0.0.5", ["203.0.113.7, 10.9.9.9"], PROXIES) == ("203.0.113.7", True)
    assert client_address("[2001:db8:ffff::1]:80", ["2001:db8:1::5"], PROXIES) == ("2001:db8:1::5", True)


def test_a_trusted_peer_without_a_usable_header_is_itself_the_client() -> None:
    assert client_address("10.0.0.5", [], PROXIES) == ("10.0.0.5", True)
    assert client_address("10.0.0.5", ["10.0.0.1, 10.0.0.2"], PROXIES) == ("10.0.0.1", True)  # all ours
    # Garbage from one of our proxies: the client is unknown, so it is the proxy that wrote it.
    assert client_address("10.0.0.5", ["203.0.113.7, garbage, 10.0.0.2"], PROXIES) == ("10.0.0.2", True)


def echo_app(settings: Settings) -> Starlette:
    class Svc:
        pass

    services = Svc()
    services.settings = settings  # type: ignore[attr-defined]

    async def show(request: Request) -> JSONResponse:
        view = forwarded(request)
        return JSONResponse({"ip": view.client_ip, "trusted": view.peer_trusted, "proto": view.proto,
                             "host": view.host, "uri": view.uri, "method": view.method,
                             "original_url": view.original_url})

    app = Starlette(routes=[Route("/", show)])
    app.state.services = services
    return app


GATEWAY_HEADERS = {"X-Forwarded-For": "198.51.100.4", "X-Forwarded-Proto": "https",
                   "X-Forwarded-Host": "app.example.com", "X-Forwarded-Uri": "/a/b?c=d,e",
                   "X-Forwarded-Method": "post", "X-Original-URL": "https://app.example.com/x"}


async def ask(settings: Settings, headers: dict[str, str], peer: str = "127.0.0.1") -> dict[str, object]:
    transport = httpx.ASGITransport(app=echo_app(settings), client=(peer, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://broker.test") as http:
        answer: dict[str, object] = (await http.get("/", headers=headers)).json()
        return answer


async def test_forwarded_headers_of_an_untrusted_peer_are_ignored_entirely() -> None:
    seen = await ask(Settings(), GATEWAY_HEADERS)
    assert seen == {"ip": "127.0.0.1", "trusted": False, "proto": None, "host": None, "uri": None,
                    "method": None, "original_url": None}


async def test_forwarded_headers_of_a_trusted_peer_describe_the_original_request() -> None:
    settings = Settings(trusted_proxies=(ip_network("127.0.0.0/8"),))
    seen = await ask(settings, GATEWAY_HEADERS)
    assert seen == {"ip": "198.51.100.4", "trusted": True, "proto": "https", "host": "app.example.com",
                    "uri": "/a/b?c=d,e", "method": "POST", "original_url": "https://app.example.com/x"}
    # Values that could not come from a sane proxy are dropped, not repaired.
    odd = await ask(settings, {"X-Forwarded-Proto": "javascript", "X-Forwarded-Host": "evil.example/@app",
                               "X-Forwarded-Uri": "app.example.com/x", "X-Forwarded-Method": "GET /"})
    assert (odd["proto"], odd["host"], odd["uri"], odd["method"]) == (None, None, None, None)
    # A list-valued header: the value our nearest proxy wrote (the last one) counts.
    listed = await ask(settings, {"X-Forwarded-Proto": "http, https",
                                  "X-Forwarded-Host": "evil.example, app.example.com"})
    assert (listed["proto"], listed["host"]) == ("https", "app.example.com")


def test_trusted_proxies_setting_takes_addresses_and_ranges() -> None:
    settings = load_settings({"BROKER_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.7,2001:db8::/32"})
    assert settings.trusted_proxies == (ip_network("10.0.0.0/8"), ip_network("192.168.1.7/32"),
                                        ip_network("2001:db8::/32"))
    assert load_settings({}).trusted_proxies == ()
    with pytest.raises(ConfigError) as refused:
        load_settings({"BROKER_TRUSTED_PROXIES": "10.0.0.0/8,proxy.internal"})
    assert "BROKER_TRUSTED_PROXIES" in str(refused.value) and "proxy.internal" in str(refused.value)
