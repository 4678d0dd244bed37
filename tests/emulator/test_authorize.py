"""Authorization endpoint and consent page: validation, PKCE at the door, consent choices, auto-auth."""

from __future__ import annotations

import re

import pytest

from tiktok_emulator import EmulatorConfig

from .conftest import MakeTikTok
from .support import ALL_SCOPES, CHALLENGE, MARA, REDIRECT, TikTok, query_of, request_id_of


async def test_consent_page_offers_exactly_the_documented_form(tiktok: TikTok) -> None:
    page = await tiktok.authorize()
    assert page.status_code == 200
    assert 'action="/v2/auth/authorize/consent"' in page.text
    form = page.text[page.text.index("<form"):page.text.index("</form>")]
    names = set(re.findall(r'name="([a-z_]+)"', form))
    assert names == {"request_id", "user", "display_name", "scope", "action"}
    assert 'value="allow"' in page.text and 'value="deny"' in page.text
    for user in tiktok.state.config.users:
        assert f'value="{user.open_id}"' in page.text
    # user.info.basic cannot be unticked: it is posted from a hidden field.
    assert '<input type="hidden" name="scope" value="user.info.basic">' in page.text


@pytest.mark.parametrize("path", ["/v2/auth/authorize/", "/v2/auth/authorize"])
async def test_both_path_spellings_and_unknown_params_are_fine(tiktok: TikTok, path: str) -> None:
    page = await tiktok.authorize(path, sdk_name="tiktok_sdk_auth", device_platform="android", lang="en")
    assert page.status_code == 200
    assert request_id_of(page)


@pytest.mark.parametrize(("overrides", "param"), [
    ({"client_key": None}, "client_key"),
    ({"client_key": "someone-else"}, "client_key"),
    ({"response_type": "token"}, "response_type"),
    ({"redirect_uri": REDIRECT + "/"}, "redirect_uri"),  # exact match: a trailing slash is a different URI
    ({"redirect_uri": "https://evil.example/cb"}, "redirect_uri"),
    ({"scope": None}, "scope"),
    ({"scope": "user.info.basic,research.adlib.basic"}, "scope"),  # not approved for the app
    ({"code_challenge": None}, "code_challenge"),
    ({"code_challenge_method": "plain"}, "code_challenge_method"),
])
async def test_configuration_errors_render_a_page_naming_the_parameter(
        tiktok: TikTok, overrides: dict[str, str | None], param: str) -> None:
    page = await tiktok.authorize(**overrides)
    assert page.status_code == 400
    assert "location" not in page.headers
    assert f"<code>{param}</code>" in page.text
    assert tiktok.state.calls[-1]["error"] == f"invalid_param:{param}"


async def test_web_without_pkce_is_allowed_when_the_flag_is_off(make_tiktok: MakeTikTok) -> None:
    tiktok = make_tiktok(require_pkce_web=False)
    redirect = await tiktok.login(code_challenge=None, code_challenge_method=None)
    response = await tiktok.token(grant_type="authorization_code", code=redirect["code"], redirect_uri=REDIRECT)
    assert "access_token" in response.json()


async def test_mobile_style_challenge_without_method_is_accepted_on_web(tiktok: TikTok) -> None:
    redirect = await tiktok.login(code_challenge_method=None)
    assert "access_token" in (await tiktok.exchange(redirect["code"])).json()


async def test_desktop_port_wildcard_and_required_method(make_tiktok: MakeTikTok) -> None:
    tiktok = make_tiktok(platform="desktop", redirect_uris=("http://127.0.0.1:*/callback/",))
    page = await tiktok.authorize(redirect_uri="http://127.0.0.1:53211/callback/")
    assert page.status_code == 200
    assert (await tiktok.authorize(redirect_uri="http://127.0.0.1:53211/other/")).status_code == 400
    missing_method = await tiktok.authorize(redirect_uri="http://127.0.0.1:1/callback/", code_challenge_method=None)
    assert missing_method.status_code == 400 and "<code>code_challenge_method</code>" in missing_method.text


@pytest.mark.parametrize(("platform", "uri"), [
    ("web", "http://127.0.0.1:*/callback/"),  # wildcards are a desktop feature
    ("web", "http://app.example.com/callback"),  # web needs https (loopback http is our deviation)
    ("web", "https://app.example.com/callback?x=1"),
    ("desktop", "http://app.example.com:8000/callback"),
    ("desktop", "http://127.0.0.1/callback"),  # desktop needs a port
])
def test_unregistrable_redirect_uris_are_refused_at_configuration(platform: str, uri: str) -> None:
    with pytest.raises(ValueError, match="redirect_uri"):
        EmulatorConfig(platform=platform, redirect_uris=(uri,))  # type: ignore[arg-type]


async def test_allow_redirects_with_code_granted_scopes_and_state(tiktok: TikTok) -> None:
    redirect = await tiktok.login()
    assert set(redirect) == {"code", "scopes", "state"}
    assert redirect["scopes"] == ALL_SCOPES
    assert redirect["state"] == "st4te-xyz"


async def test_person_may_grant_a_subset_but_never_drops_basic(tiktok: TikTok) -> None:
    redirect = await tiktok.login(scopes=("user.info.profile",))  # basic not ticked, stats unticked
    assert redirect["scopes"] == "user.info.basic,user.info.profile"
    body = (await tiktok.exchange(redirect["code"])).json()
    assert body["scope"] == "user.info.basic,user.info.profile"


async def test_deny_redirects_with_access_denied_and_no_code(tiktok: TikTok) -> None:
    page = await tiktok.authorize()
    redirect = query_of(await tiktok.consent(request_id_of(page), action="deny"))
    assert redirect["error"] == "access_denied"
    assert redirect["error_description"]
    assert redirect["state"] == "st4te-xyz"
    assert "code" not in redirect
    assert tiktok.state.calls[-1] == {**tiktok.state.calls[-1], "endpoint": "consent", "status": 302,
                                      "error": "access_denied"}


async def test_a_consent_request_can_be_answered_once(tiktok: TikTok) -> None:
    request_id = request_id_of(await tiktok.authorize())
    assert (await tiktok.consent(request_id)).status_code == 302
    again = await tiktok.consent(request_id)
    assert again.status_code == 400 and "<code>request_id</code>" in again.text


async def test_unknown_user_is_refused(tiktok: TikTok) -> None:
    page = await tiktok.consent(request_id_of(await tiktok.authorize()), user="nobody")
    assert page.status_code == 400 and "<code>user</code>" in page.text


async def test_typed_name_becomes_a_stable_user(make_tiktok: MakeTikTok) -> None:
    first, second = make_tiktok(), make_tiktok()
    a = await first.tokens(user="", display_name="Zoe Newcomer")
    b = await second.tokens(user="", display_name="Zoe Newcomer")
    assert a["open_id"] == b["open_id"]  # derived from the name, so it survives a restart
    assert a["open_id"] != MARA
    info = (await first.user_info(a["access_token"], "display_name,union_id")).json()["data"]["user"]
    assert info["display_name"] == "Zoe Newcomer"
    other_app = make_tiktok(client_key="another-app")
    assert other_app.state.users.from_name("Zoe Newcomer").open_id != a["open_id"]  # open_id is per app
    assert other_app.state.users.from_name("Zoe Newcomer").union_id == info["union_id"]  # union_id is not


async def test_auto_auth_skips_consent_only_for_an_existing_authorization(tiktok: TikTok) -> None:
    tokens = await tiktok.tokens()
    quick = await tiktok.authorize(disable_auto_auth="0")
    assert quick.status_code == 302 and query_of(quick)["code"]
    assert (await tiktok.authorize(disable_auto_auth="1")).status_code == 200
    # Asking for a scope the person never granted needs the page again.
    assert (await tiktok.authorize(disable_auto_auth="0", scope=ALL_SCOPES + ",video.list")).status_code == 200
    await tiktok.revoke(tokens["access_token"])
    assert (await tiktok.authorize(disable_auto_auth="0")).status_code == 200


async def test_challenge_is_stored_verbatim(tiktok: TikTok) -> None:
    redirect = await tiktok.login()
    code = tiktok.state.consents.find_code(redirect["code"])
    assert code is not None and code.code_challenge == CHALLENGE
