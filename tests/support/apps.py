"""Apps signing people in through the broker, step by step over real HTTP: an authorization request with PKCE,
the broker's consent page for third-party apps, the code exchange."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from tests.support.browser import Browser


@dataclass(frozen=True)
class App:
    client_id: str
    redirect_uri: str
    secret: str | None = None

    @property
    def auth(self) -> tuple[str, str] | None:
        return (self.client_id, self.secret) if self.secret else None


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorization_url(issuer: str, app: App, challenge: str, **params: str) -> str:
    query = {"client_id": app.client_id, "redirect_uri": app.redirect_uri, "response_type": "code",
             "scope": "openid", "code_challenge": challenge, "code_challenge_method": "S256", "state": "st-1",
             **params}
    return f"{issuer}/authorize?{urlencode(query)}"


def reply_params(response: httpx.Response) -> dict[str, str]:
    """What the app receives on its redirect URI (query or fragment)."""
    assert response.is_redirect, (response.status_code, response.text[:300])
    location = urlsplit(response.headers["location"])
    return {key: values[-1] for key, values in parse_qs(location.query or location.fragment).items()}


def authorize(browser: Browser, issuer: str, app: App, *, allow: bool | None = True,
              **params: str) -> tuple[httpx.Response, str]:
    """Run an authorization request in a signed-in browser, answering the broker's consent page if it shows
    (allow=None: leave it unanswered). Returns the last response and the PKCE verifier."""
    verifier, challenge = pkce()
    response = browser.get(authorization_url(issuer, app, challenge, **params))
    if allow is not None and browser.is_app_consent(response):
        response = browser.app_consent(response, allow=allow)
    return response, verifier


def tokens_for(browser: Browser, issuer: str, app: App, **params: str) -> dict[str, str]:
    """A signed-in browser authorizes `app` (consenting if asked); the app redeems the code."""
    response, verifier = authorize(browser, issuer, app, **params)
    code = reply_params(response)["code"]
    answer = exchange(issuer, app, code, verifier)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def exchange(issuer: str, app: App, code: str, verifier: str, **extra: str) -> httpx.Response:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": app.redirect_uri,
            "code_verifier": verifier, **extra}
    if app.secret is None:
        form.setdefault("client_id", app.client_id)
    return httpx.post(f"{issuer}/oauth/token", data=form, auth=app.auth, timeout=10)
