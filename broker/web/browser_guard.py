"""CSRF defence for the browser's state-changing POSTs: SameSite=Lax cookies plus an origin check here."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request

from broker.errors import Forbidden


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def require_same_origin(request: Request, issuer: str) -> None:
    """Browsers send Origin on every POST (and Sec-Fetch-Site on modern ones); neither can be set by a page.
    A POST that shows neither did not come from a browser form, and cookie-authenticated changes need one."""
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":  # "null": a privacy setting hid it; Sec-Fetch-Site decides
        if origin.lower() != _origin(issuer):
            raise Forbidden("This request came from another site and was refused.",
                               log_detail=f"cross-origin POST from {origin!r}")
        return
    if request.headers.get("sec-fetch-site") not in ("same-origin", "none"):
        raise Forbidden("This request could not be verified as coming from this site.",
                           log_detail="POST without Origin or same-origin Sec-Fetch-Site")
