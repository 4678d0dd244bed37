"""return_to checks: only exact allowlisted origins (and paths) survive, every known trick is refused."""

from __future__ import annotations

import pytest

from broker.errors import InvalidReturnUrl
from broker.flows.return_urls import ReturnUrlPolicy

POLICY = ReturnUrlPolicy("https://auth.example.com", ("https://app.example.com", "https://shop.example.com/store"))

ALLOWED = [
    (None, "https://auth.example.com/"),
    ("", "https://auth.example.com/"),
    ("/", "https://auth.example.com/"),
    ("/account?tab=1#top", "https://auth.example.com/account?tab=1#top"),
    ("https://app.example.com", "https://app.example.com/"),
    ("https://app.example.com/dashboard?x=1", "https://app.example.com/dashboard?x=1"),
    ("https://APP.Example.COM/x", "https://app.example.com/x"),
    ("https://app.example.com:443/x", "https://app.example.com/x"),
    ("HTTPS://app.example.com/x", "https://app.example.com/x"),
    ("https://shop.example.com/store", "https://shop.example.com/store"),
    ("https://shop.example.com/store/cart", "https://shop.example.com/store/cart"),
]

REFUSED = [
    "//evil.com",  # scheme-relative
    "///evil.com",
    "/\\evil.com",  # browsers treat "\" as "/"
    "\\\\evil.com",
    "/%5cevil.com",
    "https:\\\\evil.com",
    "https:evil.com",  # no authority: browsers resolve it against the current origin's scheme
    "https://app.example.com@evil.com/",  # userinfo
    "https://user:pw@app.example.com/",
    "https://app.example.com%40evil.com/",
    "https://app.example.com%2f@evil.com",
    "https://evil.com#@app.example.com",
    "https://evil.com?@app.example.com",
    "https://app.example.com.evil.com/",  # suffix match
    "https://evilapp.example.com/",
    "https://app.example.com./",  # trailing dot
    "http://app.example.com/",  # scheme downgrade
    "https://app.example.com:8443/",  # other port
    "https://shop.example.com/storefront",  # path prefix without a segment boundary
    "https://shop.example.com/store/../admin",  # dot segments escape the allowed path
    "https://shop.example.com/store/%2e%2e/admin",
    "https://shop.example.com/",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "/\t/evil.com",  # tab: browsers strip it and see //evil.com
    "/\n/evil.com",
    " https://app.example.com/",
    "https://app.example.com/\x00",
    "https://аpp.example.com/",  # noqa: RUF001 - a Cyrillic "a", on purpose
    "ftp://app.example.com/",
    "evil.com",
    "https://" + "a" * 3000 + ".com/",
]


@pytest.mark.parametrize(("raw", "expected"), ALLOWED)
def test_allowed_urls_are_normalised(raw: str | None, expected: str) -> None:
    assert POLICY.check(raw) == expected


@pytest.mark.parametrize("raw", REFUSED)
def test_tricky_urls_are_refused(raw: str) -> None:
    with pytest.raises(InvalidReturnUrl):
        POLICY.check(raw)


def test_refusals_cover_at_least_fifteen_tricks() -> None:
    assert len(REFUSED) >= 15
