"""The TikTok API proxy and the query it forwards: TikTok gets exactly what was checked, and odd queries are 400s."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from broker.config import Settings
from tests.support.asgi import raw_request
from tests.support.inprocess import InProcess, in_process


@pytest.fixture
async def stack(base_settings: Settings) -> AsyncIterator[tuple[InProcess, dict[str, str]]]:
    async with in_process(base_settings) as running:
        await running.sign_in(scopes=("user.info.basic",))
        check = await running.broker.get("/auth/verify")
        assert check.status_code == 200
        yield running, {"Authorization": check.headers["authorization"]}


def user_info_calls(stack: InProcess) -> list[dict[str, object]]:
    return [c for c in stack.emulator.state.emulator.calls if c["endpoint"] == "user_info"]


async def test_a_repeated_fields_parameter_is_refused_before_tiktok(
        stack: tuple[InProcess, dict[str, str]]) -> None:
    running, bearer = stack
    before = len(user_info_calls(running))  # the login's own
    # The scope check would read one value (user.info.basic suffices for open_id) while TikTok got both.
    smuggled = await running.broker.get("/tiktok/v2/user/info/", headers=bearer,
                                        params=[("fields", "follower_count"), ("fields", "open_id")])
    assert smuggled.status_code == 400, smuggled.text
    assert smuggled.json() == {"error": "invalid_request",
                               "error_description": "The query parameter fields appears more than once."}
    assert len(user_info_calls(running)) == before
    fine = await running.broker.get("/tiktok/v2/user/info/", headers=bearer, params={"fields": "open_id"})
    assert fine.status_code == 200, fine.text
    assert len(user_info_calls(running)) == before + 1


async def test_tiktok_gets_the_checked_parameters_encoded_afresh(stack: tuple[InProcess, dict[str, str]]) -> None:
    running, bearer = stack
    seen: list[httpx.Request] = []
    running.tiktok.event_hooks["request"].append(_noting(seen))
    status, body = await raw_request(running.app, "GET", "/tiktok/v2/user/info/",
                                     query=b"fields=open_id,display_name#tail&x=%zz;y=1",
                                     headers={"authorization": bearer["Authorization"]})
    assert status == 200, body
    forwarded = [request for request in seen if request.url.path == "/v2/user/info/"]
    assert forwarded[0].url.params.multi_items() == [("fields", "open_id,display_name#tail"), ("x", "%zz;y=1")]


def _noting(seen: list[httpx.Request]) -> Callable[[httpx.Request], Awaitable[None]]:
    async def note(request: httpx.Request) -> None:
        seen.append(request)
    return note


async def test_a_body_over_the_proxy_cap_is_refused_before_tiktok(stack: tuple[InProcess, dict[str, str]]) -> None:
    running, bearer = stack
    before = len(running.emulator.state.emulator.calls)
    status, body = await raw_request(running.app, "POST", "/tiktok/v2/video/list/", query=b"fields=id",
                                     headers={"authorization": bearer["Authorization"],
                                              "content-type": "application/json"},
                                     body=b"[" + b" " * (1 << 20) + b"]")
    assert status == 413, body
    assert len(running.emulator.state.emulator.calls) == before


async def test_a_posting_body_nested_too_deep_is_a_400_before_tiktok(
        stack: tuple[InProcess, dict[str, str]]) -> None:
    running, bearer = stack
    before = len(running.emulator.state.emulator.calls)
    for path in ("/v2/post/publish/video/init/", "/v2/post/publish/status/fetch/",
                 "/v2/post/publish/creator_info/query/"):
        # Far under the 1 MiB cap, but deeper than Python's JSON parser goes (it raises RecursionError).
        for body in (b"[" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000):
            status, answer = await raw_request(running.app, "POST", f"/tiktok{path}",
                                               headers={"authorization": bearer["Authorization"],
                                                        "content-type": "application/json"}, body=body)
            assert status == 400, (path, answer[:200])
            assert b'"invalid_request"' in answer and b"JSON object" in answer
    assert len(running.emulator.state.emulator.calls) == before


async def test_a_posting_body_naming_a_member_twice_is_a_400_before_tiktok(
        stack: tuple[InProcess, dict[str, str]]) -> None:
    """The check reads one value of a repeated JSON member (Python keeps the last) while TikTok might act on
    another: a photo post's post_mode decides the scope it needs, a status fetch's publish_id whose post it is."""
    running, bearer = stack
    before = len(running.emulator.state.emulator.calls)
    photo = (b'{"media_type":"PHOTO","post_mode":"DIRECT_POST","post_mode":"MEDIA_UPLOAD",'
             b'"source_info":{"source":"PULL_FROM_URL","photo_images":["https://media.example.com/1.jpg"]}}')
    status = b'{"publish_id":"v_pub_someone_else","publish_id":"v_pub_mine"}'
    nested = (b'{"post_info":{"privacy_level":"SELF_ONLY","title":"a","title":"b"},'
              b'"source_info":{"source":"PULL_FROM_URL","video_url":"https://media.example.com/v.mp4"}}')
    for path, body, member in (("/v2/post/publish/content/init/", photo, b"post_mode"),
                               ("/v2/post/publish/status/fetch/", status, b"publish_id"),
                               ("/v2/post/publish/video/init/", nested, b"title")):
        code, answer = await raw_request(running.app, "POST", f"/tiktok{path}",
                                         headers={"authorization": bearer["Authorization"],
                                                  "content-type": "application/json"}, body=body)
        assert code == 400, (path, answer[:200])
        assert b'"invalid_request"' in answer and member in answer, answer
    assert len(running.emulator.state.emulator.calls) == before
