"""Token endpoint: code exchange with TikTok's hex PKCE, errors, refresh rotation, TTL profiles, app tokens."""

from __future__ import annotations

import re
from typing import Any

import pytest

from broker.clock import FrozenClock
from tiktok_emulator.pkce import hex_challenge

from .conftest import MakeTikTok
from .support import B64URL_CHALLENGE, KEY, MARA, REDIRECT, SECRET, TikTok

LOG_ID = re.compile(r"^\d{14}[0-9A-F]{20}$")


def assert_oauth_error(body: dict[str, Any], error: str) -> None:
    assert body["error"] == error, body
    assert body["error_description"]
    assert LOG_ID.match(body["log_id"])
    assert "access_token" not in body


async def test_full_code_flow_with_tiktok_pkce_vector(tiktok: TikTok) -> None:
    assert hex_challenge("gaeCq5mVvbhA8Ce6w5O9XBVIKMkySgv-_9A-rnhm9Ns") == (
        "e6a178b120743d08509508f269652b0bdf91e29332921bc9e9744fd3dd41bfef")
    redirect = await tiktok.login()
    response = await tiktok.exchange(redirect["code"])
    body = response.json()
    assert response.status_code == 200
    assert set(body) == {"open_id", "scope", "access_token", "expires_in", "refresh_token",
                         "refresh_expires_in", "token_type"}
    assert body["open_id"] == MARA
    assert body["scope"] == redirect["scopes"]
    assert body["access_token"].startswith("act.") and body["refresh_token"].startswith("rft.")
    assert (body["expires_in"], body["refresh_expires_in"], body["token_type"]) == (7200, 15552000, "Bearer")
    assert LOG_ID.match(response.headers["x-tt-logid"])
    assert tiktok.state.calls[-1] == {**tiktok.state.calls[-1], "endpoint": "token",
                                      "grant_type": "authorization_code", "status": 200, "error": None}


async def test_code_is_single_use(tiktok: TikTok) -> None:
    code = (await tiktok.login())["code"]
    assert (await tiktok.exchange(code)).status_code == 200
    replay = await tiktok.exchange(code)
    assert replay.status_code == 200  # TikTok answers OAuth errors with HTTP 200 (observed)
    assert_oauth_error(replay.json(), "invalid_grant")


async def test_error_status_is_selectable(make_tiktok: MakeTikTok) -> None:
    tiktok = make_tiktok(oauth_error_status=400)
    response = await tiktok.exchange("no-such-code")
    assert response.status_code == 400
    assert_oauth_error(response.json(), "invalid_grant")


@pytest.mark.parametrize(("elapsed", "works"), [(599, True), (600, False)])
async def test_code_expires_after_code_ttl(tiktok: TikTok, clock: FrozenClock, elapsed: int, works: bool) -> None:
    code = (await tiktok.login())["code"]
    clock.advance(elapsed)
    body = (await tiktok.exchange(code)).json()
    if works:
        assert "access_token" in body
    else:
        assert_oauth_error(body, "invalid_grant")
        assert "expired" in body["error_description"]


async def test_redirect_uri_must_be_byte_identical(tiktok: TikTok) -> None:
    code = (await tiktok.login())["code"]
    body = (await tiktok.exchange(code, redirect_uri=REDIRECT + "/")).json()
    assert_oauth_error(body, "invalid_request")
    assert "redirect_uri" in body["error_description"]
    assert "access_token" in (await tiktok.exchange(code)).json()  # a failed attempt does not burn the code


@pytest.mark.parametrize("verifier", [
    "A" * 43,  # well-formed but not the one behind the challenge
    "",  # missing
    "gaeCq5mVvbhA8Ce6w5O9XBVIKMkySgv-_9A-rnhm9Ns!",  # right prefix, illegal character
])
async def test_pkce_mismatch_is_invalid_request(tiktok: TikTok, verifier: str) -> None:
    body = (await tiktok.exchange((await tiktok.login())["code"], verifier=verifier)).json()
    assert_oauth_error(body, "invalid_request")
    assert body["error_description"] == "Code verifier or code challenge is invalid."


async def test_verifier_length_floor_is_32(tiktok: TikTok) -> None:
    short, android = "a" * 31, "b" * 32  # TikTok's Android SDK sends 32-character verifiers
    code = (await tiktok.login(code_challenge=hex_challenge(short)))["code"]
    assert_oauth_error((await tiktok.exchange(code, verifier=short)).json(), "invalid_request")
    code = (await tiktok.login(code_challenge=hex_challenge(android)))["code"]
    assert "access_token" in (await tiktok.exchange(code, verifier=android)).json()


async def test_base64url_challenge_is_rejected_unless_flagged(make_tiktok: MakeTikTok) -> None:
    strict = make_tiktok()
    body = (await strict.exchange((await strict.login(code_challenge=B64URL_CHALLENGE))["code"])).json()
    assert body["error_description"] == "Code verifier or code challenge is invalid."
    lenient = make_tiktok(accept_base64url_challenge=True)
    code = (await lenient.login(code_challenge=B64URL_CHALLENGE))["code"]
    assert "access_token" in (await lenient.exchange(code)).json()


async def test_json_body_is_invalid_request(tiktok: TikTok) -> None:
    response = await tiktok.client.post("/v2/oauth/token/", json={
        "client_key": KEY, "client_secret": SECRET, "grant_type": "client_credentials"})
    assert_oauth_error(response.json(), "invalid_request")


@pytest.mark.parametrize(("fields", "error"), [
    ({"client_secret": "wrong"}, "invalid_client"),
    ({"client_key": "unknown"}, "invalid_client"),
    ({"grant_type": "password"}, "unsupported_grant_type"),
    ({"grant_type": ""}, "invalid_request"),
    ({"grant_type": "authorization_code", "redirect_uri": REDIRECT}, "invalid_request"),  # no code
    ({"grant_type": "refresh_token"}, "invalid_request"),
    ({"grant_type": "refresh_token", "refresh_token": "rft.made-up"}, "invalid_grant"),
])
async def test_token_errors(tiktok: TikTok, fields: dict[str, str], error: str) -> None:
    response = await tiktok.client.post("/v2/oauth/token/", data={
        "client_key": KEY, "client_secret": SECRET, "grant_type": "client_credentials", **fields})
    assert_oauth_error(response.json(), error)
    assert tiktok.state.calls[-1]["error"] == error


async def test_refresh_rotates_and_keeps_the_original_deadline(tiktok: TikTok, clock: FrozenClock) -> None:
    first = await tiktok.tokens()
    clock.advance(1000)
    second = (await tiktok.refresh(first["refresh_token"])).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["refresh_expires_in"] == 15552000 - 1000
    assert (second["open_id"], second["scope"], second["expires_in"]) == (first["open_id"], first["scope"], 7200)
    assert_oauth_error((await tiktok.refresh(first["refresh_token"])).json(), "invalid_grant")
    assert "access_token" in (await tiktok.refresh(second["refresh_token"])).json()
    assert tiktok.state.calls[-1]["token"] == second["refresh_token"]
    # The previous access token lives on until it expires (flag old_access_token_survives_refresh).
    assert (await tiktok.user_info(first["access_token"])).status_code == 200


async def test_refresh_flags(make_tiktok: MakeTikTok, clock: FrozenClock) -> None:
    tiktok = make_tiktok(refresh_resets_deadline=True, old_access_token_survives_refresh=False,
                         ttl_profile="legacy")
    first = await tiktok.tokens()
    assert (first["expires_in"], first["refresh_expires_in"]) == (86400, 31536000)
    clock.advance(1000)
    second = (await tiktok.refresh(first["refresh_token"])).json()
    assert second["refresh_expires_in"] == 31536000
    assert (await tiktok.user_info(first["access_token"])).status_code == 401
    assert (await tiktok.user_info(second["access_token"])).status_code == 200


async def test_refresh_token_dies_at_its_deadline(tiktok: TikTok, clock: FrozenClock) -> None:
    first = await tiktok.tokens()
    clock.advance(15552000)
    body = (await tiktok.refresh(first["refresh_token"])).json()
    assert_oauth_error(body, "invalid_grant")
    assert "expired" in body["error_description"]


async def test_client_credentials_token_is_an_app_token(tiktok: TikTok) -> None:
    body = (await tiktok.token(grant_type="client_credentials")).json()
    assert set(body) == {"access_token", "expires_in", "token_type"}
    assert body["access_token"].startswith("clt.") and body["expires_in"] == 7200
    info = await tiktok.user_info(body["access_token"])
    assert info.status_code == 401
    assert info.json()["error"]["code"] == "scope_not_authorized"
