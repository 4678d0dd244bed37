"""Real credentials from a live stack: a browser session (signed in through the emulator), broker JWTs and
refresh tokens, an authorization code, and a registered confidential client."""

from __future__ import annotations

import base64
import hashlib
import itertools
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

from broker.clients import secret_digest
from broker.flows.tokens import SESSION_GRANT
from tests.support.browser import Browser

SERVICE_ID = "jobs"
SERVICE_SECRET = "jobs-secret-0123456789-abcdefghijklmnopqrst"
SPA_ID = "spa"
SPA_CALLBACK = "https://app.example.com/spa/cb"
SCOPES = ("user.info.basic", "user.info.profile")
HIDDEN = re.compile(r'<input type="hidden" name="(confirmation|csrf_token|sid)" value="([^"]+)"')
_names = itertools.count(1)


def write_clients_file(path: Path) -> Path:
    """A confidential service (introspection, the TikTok proxy for a user) and the company's own public SPA (OIDC,
    PKCE; first party, so no consent page)."""
    path.write_text(f"""
clients:
  - client_id: {SERVICE_ID}
    client_secret_sha256: {secret_digest(SERVICE_SECRET)}
    scopes: [tiktok.proxy]
  - client_id: {SPA_ID}
    first_party: true
    redirect_uris: ["{SPA_CALLBACK}"]
    scopes: [openid, profile, user.info.basic, user.info.profile]
""")
    return path


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


@dataclass
class Person:
    """A signed-in browser: its session cookie value and the broker user id (`sub`) behind it."""

    browser: Browser
    issuer: str
    cookie_name: str
    verifier: str = ""

    @property
    def cookie(self) -> str:
        return str(self.browser.client.cookies[self.cookie_name])

    @property
    def sub(self) -> str:
        return self.cookie.split(".")[0]

    def access_token(self) -> str:
        """The session's broker JWT, as the gateway check hands it to an upstream."""
        check = self.browser.client.get(f"{self.issuer}/auth/verify")
        assert check.status_code == 200, check.text
        return check.headers["authorization"].removeprefix("Bearer ")

    def token_pair(self) -> dict[str, str]:
        """A new refresh family (access JWT and refresh token) through the session-cookie grant."""
        answer = self.browser.client.post(f"{self.issuer}/oauth/token", data={"grant_type": SESSION_GRANT},
                                          headers={"Origin": self.issuer})
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def _hidden_fields(self, page: str) -> dict[str, str]:
        html = self.browser.client.get(f"{self.issuer}{page}").text
        fields = {name: value for name, value in HIDDEN.findall(html)}
        assert fields, f"no form on {page}"
        return fields

    def delete_form(self) -> dict[str, str]:
        """The confirmation of the deletion page."""
        return self._hidden_fields("/account/delete")

    def end_session_form(self) -> dict[str, str]:
        """The form that ends another session of this person (an app's refresh family, started here)."""
        self.token_pair()
        return self._hidden_fields("/account")

    def authorization_request(self, **extra: str) -> str:
        """The query of an authorization request of the public SPA client; remembers its PKCE verifier."""
        self.verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(self.verifier.encode()).digest()
        challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        return urlencode({"client_id": SPA_ID, "redirect_uri": SPA_CALLBACK, "response_type": "code",
                          "scope": "openid profile", "code_challenge": challenge, "code_challenge_method": "S256",
                          **extra})

    def authorization_code(self) -> dict[str, str]:
        """A fresh code for the SPA client, with the PKCE verifier that redeems it."""
        answer = self.browser.get(f"{self.issuer}/authorize?{self.authorization_request()}", follow=False)
        assert answer.status_code == 302, answer.text
        code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
        return {"code": code, "code_verifier": self.verifier, "redirect_uri": SPA_CALLBACK, "client_id": SPA_ID}

    def close(self) -> None:
        self.browser.close()


def sign_in(issuer: str, cookie_name: str) -> Person:
    """A new TikTok user signs in through the emulator's consent page, as a person would."""
    browser = Browser()
    consent = browser.get(f"{issuer}/login?prompt=login")  # the consent page, even after an earlier consent
    assert consent.status_code == 200, consent.text
    home = browser.consent(consent, display_name=f"Spec Person {next(_names)}", scopes=SCOPES)
    assert home.status_code == 200 and home.url == f"{issuer}/", home.text
    return Person(browser, issuer, cookie_name)
