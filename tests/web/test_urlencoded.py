"""The URL-encoded form reader gives what Starlette's own parser gives, for any body (a property test)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.exceptions import HTTPException
from starlette.requests import Request

from broker.web.bodies import MAX_FORM_FIELDS, parse_urlencoded

PIECES = st.sampled_from(["&", "=", "+", "%", "%2", "%26", "%3D", "%C3%A9", "%ff", "a", "b", "é", ";", " ", "&&",
                          "grant_type", "refresh_token", "brt1.x", "\\x00"])


def starlette_form(body: bytes, max_fields: int) -> list[tuple[str, str]] | str:
    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "headers": [(b"content-type", b"application/x-www-form-urlencoded")],
             "app": object()}

    async def parse() -> list[tuple[str, str]] | str:
        try:
            form = await Request(scope, receive).form(max_fields=max_fields)
        except HTTPException as refused:
            return f"{refused.status_code} {refused.detail}"
        return [(k, str(v)) for k, v in form.multi_items()]

    return asyncio.run(parse())


def ours(body: bytes, max_fields: int) -> list[tuple[str, str]] | str:
    try:
        return [(k, str(v)) for k, v in parse_urlencoded(body, max_fields=max_fields).multi_items()]
    except HTTPException as refused:
        return f"{refused.status_code} {refused.detail}"


@settings(max_examples=400, deadline=None)
@given(st.lists(PIECES, max_size=30).map("".join), st.integers(min_value=1, max_value=6))
def test_the_same_fields_as_starlettes_parser(text: str, max_fields: int) -> None:
    body = text.encode("utf-8")
    assert ours(body, max_fields) == starlette_form(body, max_fields)


@pytest.mark.parametrize("body", [b"", b"a", b"a=", b"=b", b"a=1&a=2", b"a=1=2", b"&&a=%41+b&&", b"x=%zz",
                                  b"grant_type=refresh_token&refresh_token=brt1.abc"])
def test_examples(body: bytes) -> None:
    assert ours(body, MAX_FORM_FIELDS) == starlette_form(body, MAX_FORM_FIELDS)
