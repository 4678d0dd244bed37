"""`/_emulator/posts` and the Share Kit trigger: what tests and demos use to see posts and end them on purpose."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tiktok_emulator.control import _bad, _json_object
from tiktok_emulator.state import emulator

SHARE_EVENTS = ("video.upload.failed", "video.publish.completed")  # Share Kit (client side), by share_id


async def list_posts(request: Request) -> Response:
    return JSONResponse({"posts": [post.to_json() for post in emulator(request).posts.all()]})


async def fail_post(request: Request) -> Response:
    """End a post that has not settled yet as FAILED with `reason` (default `internal`)."""
    state = emulator(request)
    post = state.posts.get(request.path_params["publish_id"])
    body = await _json_object(request)
    reason = body.get("reason", "internal") if body is not None else None
    if post is None:
        return _bad("no such publish_id", 404)
    if not isinstance(reason, str) or not reason:
        return _bad("reason must be a non-empty string")
    if post.settled:
        return _bad(f"the post already ended ({post.status})", 409)
    state.posts.settle(post, reason)
    return JSONResponse(post.to_json())


async def take_down(request: Request) -> Response:
    """A public post stops being public: `post.publish.no_longer_publicaly_available`."""
    state = emulator(request)
    post = state.posts.get(request.path_params["publish_id"])
    if post is None:
        return _bad("no such publish_id", 404)
    if not state.posts.take_down(post):
        return _bad("only a public, published post can be taken down (once)", 409)
    return JSONResponse(post.to_json())


async def share_event(request: Request) -> Response:
    body = await _json_object(request)
    if body is None:
        return _bad("body must be a JSON object")
    open_id, event, share_id = body.get("open_id"), body.get("event"), body.get("share_id")
    if not isinstance(open_id, str) or not open_id or not isinstance(share_id, str) or not share_id:
        return _bad("open_id and share_id (strings) are required")
    if event not in SHARE_EVENTS:
        return _bad(f"event must be one of {list(SHARE_EVENTS)}")
    queued = emulator(request).webhooks.send(event, open_id, {"share_id": share_id},
                                             duplicate=bool(body.get("duplicate", False)))
    return JSONResponse({"webhook": "queued" if queued else "not sent: no webhook_url configured"}, 202)


routes = [
    Route("/_emulator/posts", list_posts, methods=["GET"]),
    Route("/_emulator/posts/{publish_id}/fail", fail_post, methods=["POST"]),
    Route("/_emulator/posts/{publish_id}/take-down", take_down, methods=["POST"]),
    Route("/_emulator/webhooks/share", share_event, methods=["POST"]),
]
