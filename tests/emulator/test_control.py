"""The control API and the human pages: expiry, the call log, users, reset, the home page."""

from __future__ import annotations

from .support import MARA, TikTok


async def test_expire_makes_an_access_token_dead_now(tiktok: TikTok) -> None:
    tokens = await tiktok.tokens()
    response = await tiktok.client.post("/_emulator/expire", json={"access_token": tokens["access_token"]})
    assert response.status_code == 200
    assert (await tiktok.user_info(tokens["access_token"])).json()["error"]["code"] == "access_token_invalid"
    assert "access_token" in (await tiktok.refresh(tokens["refresh_token"])).json()  # refresh still works
    unknown = await tiktok.client.post("/_emulator/expire", json={"access_token": "act.nope"})
    assert unknown.status_code == 404


async def test_call_log_lists_and_clears(tiktok: TikTok) -> None:
    tokens = await tiktok.tokens()
    await tiktok.user_info(tokens["access_token"])
    calls = (await tiktok.client.get("/_emulator/calls")).json()["calls"]
    assert [c["endpoint"] for c in calls] == ["authorize", "consent", "token", "user_info"]
    assert [c["status"] for c in calls] == [200, 302, 200, 200]
    assert (await tiktok.client.delete("/_emulator/calls")).status_code == 200
    assert (await tiktok.client.get("/_emulator/calls")).json()["calls"] == []


async def test_users_and_tokens_views(tiktok: TikTok) -> None:
    tokens = await tiktok.tokens()
    users = (await tiktok.client.get("/_emulator/users")).json()["users"]
    assert MARA in [u["open_id"] for u in users]
    issued = (await tiktok.client.get(f"/_emulator/users/{MARA}/tokens")).json()["tokens"]
    assert {(t["kind"], t["token"], t["active"]) for t in issued} == {
        ("access", tokens["access_token"], True), ("refresh", tokens["refresh_token"], True)}


async def test_reset_forgets_everything_issued(tiktok: TikTok) -> None:
    tokens = await tiktok.tokens()
    assert (await tiktok.client.post("/_emulator/reset", json={})).status_code == 200
    assert (await tiktok.user_info(tokens["access_token"])).status_code == 401
    assert tiktok.state.issued_tokens_for(MARA) == []


async def test_home_page_introduces_the_emulator(tiktok: TikTok) -> None:
    page = await tiktok.client.get("/")
    assert page.status_code == 200 and "TikTok emulator" in page.text
    for user in tiktok.state.config.users:
        assert user.display_name in page.text and user.open_id in page.text


async def test_the_control_api_answers_only_loopback_hosts_and_json(tiktok: TikTok) -> None:
    tokens = await tiktok.tokens()
    # A page on another site (DNS rebinding: its name resolves to 127.0.0.1) sends its own Host.
    for host in ("evil.example", "evil.example:8081", "127.0.0.1.evil.example"):
        refused = await tiktok.client.get(f"/_emulator/users/{MARA}/tokens", headers={"Host": host})
        assert refused.status_code == 403, host
        assert "token" not in refused.text.replace("tokens", "")
    for host in ("localhost:8081", "[::1]:8081", "127.0.0.1"):
        assert (await tiktok.client.get("/_emulator/users", headers={"Host": host})).status_code == 200, host
    # A cross-site form can POST text/plain without a preflight: refused, and nothing was reset.
    plain = await tiktok.client.post("/_emulator/reset", content=b"{}", headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415
    bare = await tiktok.client.post("/_emulator/reset")
    assert bare.status_code == 415
    assert (await tiktok.user_info(tokens["access_token"])).status_code == 200
