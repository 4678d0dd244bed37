"""Apps written with third-party OpenID libraries, as the library tests register them: one of each kind of
client (confidential with client_secret_basic, confidential with client_secret_post and ES256 ID tokens, public
with PKCE), all third-party (the consent page shows), each with a post-logout URI and a back-channel URI."""

from __future__ import annotations

from dataclasses import dataclass

from broker.clients import secret_digest
from tests.e2e.conftest import ALICE, Stack
from tests.support.browser import Browser

SECRET = "library-secret-0123456789-abcdefghijklmnop"
BYE = "https://rp.example.com/signed-out"


@dataclass(frozen=True)
class Kind:
    client_id: str
    auth_method: str
    id_token_alg: str

    @property
    def redirect_uri(self) -> str:
        return f"https://rp.example.com/{self.client_id}/cb"

    @property
    def secret(self) -> str | None:
        return None if self.auth_method == "none" else SECRET


KINDS = {"confidential-basic": Kind("rp-basic", "client_secret_basic", "RS256"),
         "confidential-post": Kind("rp-post", "client_secret_post", "ES256"),
         "public-pkce": Kind("rp-public", "none", "RS256")}


def clients_yaml(backchannel_uri: str) -> str:
    entries = []
    for kind in KINDS.values():
        secret = f"    client_secret_sha256: {secret_digest(SECRET)}\n" if kind.secret else ""
        entries.append(f"""  - client_id: {kind.client_id}
    client_name: Library {kind.client_id}
{secret}    token_endpoint_auth_method: {kind.auth_method}
    redirect_uris: ["{kind.redirect_uri}"]
    post_logout_redirect_uris: ["{BYE}"]
    backchannel_logout_uri: {backchannel_uri}
    id_token_signed_response_alg: {kind.id_token_alg}
    scopes: [openid, profile]
""")
    return "clients:\n" + "".join(entries)


def until_app(stack: Stack, browser: Browser, url: str, *, at_tiktok: str = "allow") -> tuple[str, bool]:
    """A browser follows a URL until it leaves for the app: TikTok's page answered with `at_tiktok`, the broker's
    consent page allowed. Returns where it lands and whether the broker asked for consent."""
    response = browser.get(url)
    if response.url.port == stack.emulator.port and response.status_code == 200:
        response = browser.consent(response, user=ALICE, scopes=("user.info.basic", "user.info.profile"),
                                   action=at_tiktok)
    asked = browser.is_app_consent(response)
    if asked:
        response = browser.app_consent(response)
    assert response.is_redirect, (response.status_code, response.text[:300])
    return response.headers["location"], asked
