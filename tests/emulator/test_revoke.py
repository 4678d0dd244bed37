"""Revoke: the whole authorization dies (every token of the user), it is forgotten, and it is idempotent."""

from __future__ import annotations

from .support import MARA, TikTok


async def test_revoke_kills_the_token_family(tiktok: TikTok) -> None:
    first = await tiktok.tokens()
    second = (await tiktok.refresh(first["refresh_token"])).json()
    response = await tiktok.revoke(second["access_token"])
    assert response.status_code == 200
    assert response.json() == {}
    for access in (first["access_token"], second["access_token"]):
        assert (await tiktok.user_info(access)).json()["error"]["code"] == "access_token_invalid"
    assert (await tiktok.refresh(second["refresh_token"])).json()["error"] == "invalid_grant"
    issued = tiktok.state.issued_tokens_for(MARA)
    assert len(issued) == 4 and not any(t.active for t in issued)
    [revoke_call] = [c for c in tiktok.state.calls if c["endpoint"] == "revoke"]
    assert revoke_call["token"] == second["access_token"] and revoke_call["status"] == 200


async def test_revoke_takes_other_sessions_of_the_same_user_but_not_other_users(tiktok: TikTok) -> None:
    laptop, phone = await tiktok.tokens(), await tiktok.tokens()
    other = await tiktok.tokens(user="3f9a6b1c-2d4e-4f50-8a71-b2c3d4e5f607")
    await tiktok.revoke(laptop["access_token"])
    assert (await tiktok.user_info(phone["access_token"])).status_code == 401
    assert (await tiktok.user_info(other["access_token"])).status_code == 200


async def test_revoke_needs_the_app_credentials_and_a_real_access_token(tiktok: TikTok) -> None:
    tokens = await tiktok.tokens()
    assert (await tiktok.revoke(tokens["access_token"], secret="nope")).json()["error"] == "invalid_client"
    assert (await tiktok.revoke(tokens["refresh_token"])).json()["error"] == "invalid_request"
    assert (await tiktok.user_info(tokens["access_token"])).status_code == 200  # nothing was revoked


async def test_revoking_twice_is_harmless(tiktok: TikTok) -> None:
    tokens = await tiktok.tokens()
    assert (await tiktok.revoke(tokens["access_token"])).json() == {}
    assert (await tiktok.revoke(tokens["access_token"])).json() == {}
