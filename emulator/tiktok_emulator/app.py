"""Assembles the emulator: TikTok's paths, the control API, the home page, and the in-memory state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tiktok_emulator import control, posts_control
from tiktok_emulator.authorize import authorize_endpoint, consent_endpoint
from tiktok_emulator.avatars import avatar
from tiktok_emulator.clock import Clock, SystemClock
from tiktok_emulator.config import EmulatorConfig
from tiktok_emulator.pages import home_page
from tiktok_emulator.publish_api import (
    content_init_endpoint,
    creator_info_endpoint,
    inbox_init_endpoint,
    status_fetch_endpoint,
    video_init_endpoint,
)
from tiktok_emulator.revoke import revoke_endpoint
from tiktok_emulator.state import EmulatorState
from tiktok_emulator.token import token_endpoint
from tiktok_emulator.upload import upload_endpoint
from tiktok_emulator.userinfo import user_info_endpoint
from tiktok_emulator.videos import video_list_endpoint, video_query_endpoint


async def home(request: Request) -> Response:
    return home_page(request)


def create_emulator_app(config: EmulatorConfig | None = None, *, clock: Clock | None = None,
                        webhook_client: httpx.AsyncClient | None = None) -> Starlette:
    """A fresh emulator with its own state at `app.state.emulator`; pass a FrozenClock to test expiry.

    `webhook_client` sends webhooks (inject one to capture them); without it the emulator opens its own
    on first use and closes it at shutdown (or on `await app.state.emulator.webhooks.aclose()`).
    """
    state = EmulatorState(config or EmulatorConfig(), clock or SystemClock(), webhook_client)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await state.posts.aclose()
        await state.webhooks.aclose()

    routes = [
        Route("/", home, methods=["GET"]),
        # TikTok documents the trailing slash; its Android SDK omits it. Both work.
        Route("/v2/auth/authorize/", authorize_endpoint, methods=["GET"]),
        Route("/v2/auth/authorize", authorize_endpoint, methods=["GET"]),
        Route("/v2/auth/authorize/consent", consent_endpoint, methods=["POST"]),
        Route("/v2/oauth/token/", token_endpoint, methods=["POST"]),
        Route("/v2/oauth/revoke/", revoke_endpoint, methods=["POST"]),
        Route("/v2/user/info/", user_info_endpoint, methods=["GET"]),
        Route("/v2/video/list/", video_list_endpoint, methods=["POST"]),
        Route("/v2/video/query/", video_query_endpoint, methods=["POST"]),
        Route("/v2/post/publish/creator_info/query/", creator_info_endpoint, methods=["POST"]),
        Route("/v2/post/publish/video/init/", video_init_endpoint, methods=["POST"]),
        Route("/v2/post/publish/inbox/video/init/", inbox_init_endpoint, methods=["POST"]),
        Route("/v2/post/publish/content/init/", content_init_endpoint, methods=["POST"]),
        Route("/v2/post/publish/status/fetch/", status_fetch_endpoint, methods=["POST"]),
        # TikTok serves upload_urls from a host of their own; the emulator serves them itself.
        Route("/video/", upload_endpoint, methods=["PUT"]),
        Route("/_emulator/avatars/{open_id}.svg", avatar, methods=["GET"]),
        *control.routes,
        *posts_control.routes,
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.emulator = state
    return app
