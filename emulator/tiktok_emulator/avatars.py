"""Avatar images for test users: an SVG with the person's initials, so profile pictures render offline."""

from __future__ import annotations

import hashlib
from html import escape

from starlette.requests import Request
from starlette.responses import Response

from tiktok_emulator.state import emulator

_COLOURS = ("#fe2c55", "#25f4ee", "#7b61ff", "#ff9f1c", "#2ec4b6", "#3a86ff")


def _initials(display_name: str) -> str:
    letters = [part[0] for part in display_name.split() if part]
    return "".join(letters[:2]).upper() or "?"


async def avatar(request: Request) -> Response:
    state = emulator(request)
    open_id = request.path_params["open_id"]
    user = state.users.get(open_id)
    if user is None:
        return Response("unknown user", 404, media_type="text/plain")
    size = request.query_params.get("size", "168")
    px = int(size) if size.isdigit() and 16 <= int(size) <= 2048 else 168
    colour = _COLOURS[hashlib.sha256(open_id.encode()).digest()[0] % len(_COLOURS)]
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{px}" height="{px}" viewBox="0 0 100 100">'
           f'<rect width="100" height="100" fill="{colour}"/>'
           f'<text x="50" y="50" dy=".35em" text-anchor="middle" font-family="sans-serif" font-size="40" '
           f'fill="#fff">{escape(_initials(user.display_name))}</text></svg>')
    return Response(svg, 200, media_type="image/svg+xml")
