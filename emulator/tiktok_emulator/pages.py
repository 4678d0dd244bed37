"""The HTML a person sees: TikTok-style error page, the consent page, and the emulator's home page."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from tiktok_emulator.config import BASIC
from tiktok_emulator.responses import note_error
from tiktok_emulator.sessions import PendingAuthorization
from tiktok_emulator.state import emulator

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

SCOPE_DESCRIPTIONS = {
    BASIC: "Read your profile info (avatar, display name)",
    "user.info.profile": "Read your profile details (username, bio, verified badge, profile link)",
    "user.info.stats": "Read your stats (followers, following, likes and video counts)",
    "video.list": "Read your public videos",
    "video.publish": "Post content to your TikTok profile",
    "video.upload": "Send drafts to your TikTok inbox",
}


def error_page(request: Request, param: str, message: str, status: int = 400) -> Response:
    """TikTok shows configuration mistakes on its own page, naming the parameter, instead of redirecting."""
    note_error(request, f"invalid_param:{param}")
    return templates.TemplateResponse(request, "error.html", {"param": param, "message": message},
                                      status_code=status)


def consent_page(request: Request, pending: PendingAuthorization) -> Response:
    state = emulator(request)
    scopes = [{"name": s, "description": SCOPE_DESCRIPTIONS.get(s, s), "required": s == BASIC}
              for s in pending.scopes]
    users = [*state.users.seeded(), *state.users.typed()]
    selected = state.consents.last_user() or (users[0].open_id if users else "")
    return templates.TemplateResponse(request, "consent.html", {
        "client_key": state.config.client_key,
        "redirect_uri": pending.redirect_uri,
        "request_id": pending.request_id,
        "scopes": scopes,
        "users": [state.users.public_profile(u) for u in users],
        "selected": selected,
    })


def home_page(request: Request) -> Response:
    state = emulator(request)
    users = [state.users.public_profile(u) for u in (*state.users.seeded(), *state.users.typed())]
    return templates.TemplateResponse(request, "home.html", {"config": state.config, "users": users})
