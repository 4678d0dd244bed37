"""SDK-style codes (contract §12): bound to the app's https redirect URI and to a hex challenge sent without
code_challenge_method; only the matching verifier redeems them. The control API hands them out without a phone."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from tiktok_emulator import EmulatorConfig
from tiktok_emulator.pkce import base64url_challenge, hex_challenge

from .conftest import MakeTikTok
from .support import CHALLENGE, MARA, VERIFIER, TikTok, query_of, request_id_of
from .test_token import assert_oauth_error

APP_LINK = "https://app.example.com/tiktok/callback"


@pytest.fixture
def tiktok(make_tiktok: MakeTikTok) -> TikTok:
    return make_tiktok(sdk_redirect_uris=(APP_LINK,), accept_base64url_challenge=True)


async def sdk_code(tiktok: TikTok, **overrides: Any) -> httpx.Response:
    body = {"redirect_uri": APP_LINK, "code_challenge": CHALLENGE, "scope": "user.info.basic,user.info.profile",
            "user": MARA, "state": "from-the-app", **overrides}
    return await tiktok.client.post("/_emulator/sdk/authorize", json={k: v for k, v in body.items() if v is not None})


async def redeem(tiktok: TikTok, code: str, **fields: str) -> httpx.Response:
    return await tiktok.token(grant_type="authorization_code", code=code, **fields)


async def test_the_control_api_plays_the_sdk_and_the_code_redeems_with_its_verifier(tiktok: TikTok) -> None:
    issued = await sdk_code(tiktok)
    assert issued.status_code == 201
    assert issued.json() == {"code": issued.json()["code"], "scopes": "user.info.basic,user.info.profile",
                             "state": "from-the-app"}
    answer = await redeem(tiktok, issued.json()["code"], redirect_uri=APP_LINK, code_verifier=VERIFIER)
    assert answer.json()["open_id"] == MARA and answer.json()["scope"] == "user.info.basic,user.info.profile"


async def test_an_android_verifier_of_32_characters_works(tiktok: TikTok) -> None:
    verifier = secrets.token_hex(16)  # the Android SDK's 32 alphanumerics
    issued = await sdk_code(tiktok, code_challenge=hex_challenge(verifier))
    answer = await redeem(tiktok, issued.json()["code"], redirect_uri=APP_LINK, code_verifier=verifier)
    assert "access_token" in answer.json()


@pytest.mark.parametrize("verifier", ["", "x" * 43, "gaeCq5mVvbhA8Ce6w5O9XBVIKMkySgv-_9A-rnhm9Nt"])
async def test_only_the_matching_verifier_redeems_it(tiktok: TikTok, verifier: str) -> None:
    code = (await sdk_code(tiktok)).json()["code"]
    fields = {"redirect_uri": APP_LINK, **({"code_verifier": verifier} if verifier else {})}
    refused = await redeem(tiktok, code, **fields)
    assert_oauth_error(refused.json(), "invalid_request")
    assert refused.json()["error_description"] == "Code verifier or code challenge is invalid."
    # Not spent by a failed attempt: the right verifier still works.
    assert "access_token" in (await redeem(tiktok, code, redirect_uri=APP_LINK, code_verifier=VERIFIER)).json()


async def test_a_base64url_challenge_never_redeems_an_sdk_code(tiktok: TikTok) -> None:
    """The web flag for base64url challenges does not apply: TikTok's SDKs hash in hex."""
    verifier = secrets.token_urlsafe(32)
    refused = await sdk_code(tiktok, code_challenge=base64url_challenge(verifier))
    assert refused.status_code == 400 and "hex" in refused.json()["error"]


async def test_the_code_is_bound_to_the_apps_redirect_uri(make_tiktok: MakeTikTok) -> None:
    other = "https://app.example.com/other"
    tiktok = make_tiktok(sdk_redirect_uris=(APP_LINK, other))
    code = (await sdk_code(tiktok)).json()["code"]
    refused = await redeem(tiktok, code, redirect_uri=other, code_verifier=VERIFIER)
    assert_oauth_error(refused.json(), "invalid_request")
    assert "redirect_uri" in refused.json()["error_description"]


async def test_the_code_is_single_use(tiktok: TikTok) -> None:
    code = (await sdk_code(tiktok)).json()["code"]
    assert (await redeem(tiktok, code, redirect_uri=APP_LINK, code_verifier=VERIFIER)).status_code == 200
    assert_oauth_error((await redeem(tiktok, code, redirect_uri=APP_LINK, code_verifier=VERIFIER)).json(),
                       "invalid_grant")


REFUSED = {
    "unregistered redirect": ({"redirect_uri": "https://evil.example.com/cb"}, "sdk_redirect_uris"),
    "no challenge": ({"code_challenge": None}, "PKCE is required"),
    "upper-case hex": ({"code_challenge": CHALLENGE.upper()}, "lowercase hex"),
    "unapproved scope": ({"scope": "user.info.basic,research.data"}, "not approved"),
    "unknown user": ({"user": "nobody"}, "test user"),
}


@pytest.mark.parametrize("overrides,message", REFUSED.values(), ids=REFUSED.keys())
async def test_the_control_api_refuses_what_the_sdk_would_not_get(tiktok: TikTok, overrides: dict[str, Any],
                                                                  message: str) -> None:
    refused = await sdk_code(tiktok, **overrides)
    assert refused.status_code == 400 and message in refused.json()["error"]


async def test_the_browser_side_takes_an_sdk_request_without_code_challenge_method(tiktok: TikTok) -> None:
    """An SDK that signs in through a browser tab (Chrome custom tab) sends the same request to the web page."""
    page = await tiktok.authorize(redirect_uri=APP_LINK, code_challenge_method=None, state=None)
    assert page.status_code == 200, page.text
    back = query_of(await tiktok.consent(request_id_of(page)))
    answer = await redeem(tiktok, back["code"], redirect_uri=APP_LINK, code_verifier=VERIFIER)
    assert answer.json()["open_id"] == MARA
    not_hex = await tiktok.authorize(redirect_uri=APP_LINK, code_challenge=base64url_challenge(VERIFIER),
                                     code_challenge_method=None)
    assert not_hex.status_code == 400 and "code_challenge" in not_hex.text


def test_sdk_redirect_uris_must_be_https_links() -> None:
    with pytest.raises(ValueError, match="https URL with a host"):
        EmulatorConfig(sdk_redirect_uris=("myapp://tiktok",))
    with pytest.raises(ValueError, match="query string"):
        EmulatorConfig(sdk_redirect_uris=("https://app.example.com/cb?x=1",))
