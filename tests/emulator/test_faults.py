"""Injected faults: every mode on the OAuth and API families, counting, scoping, and the control API."""

from __future__ import annotations

import json
import time

import pytest

from .support import TikTok


async def add_fault(tiktok: TikTok, **fault: object) -> dict[str, object]:
    response = await tiktok.client.post("/_emulator/faults", json=fault)
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


@pytest.mark.parametrize(("mode", "status", "error"), [
    ("http_500", 500, "server_error"),
    ("error_200", 200, "server_error"),
    ("rate_limit", 429, "rate_limit_exceeded"),
])
async def test_token_fault_modes_answer_tiktok_shaped_errors(tiktok: TikTok, mode: str, status: int,
                                                             error: str) -> None:
    code = (await tiktok.login())["code"]
    await add_fault(tiktok, endpoint="token", mode=mode, count=1)
    response = await tiktok.exchange(code)
    assert response.status_code == status
    body = response.json()
    assert body["error"] == error and body["error_description"] and body["log_id"]
    assert tiktok.state.calls[-1] == {**tiktok.state.calls[-1], "endpoint": "token", "status": status,
                                      "grant_type": "authorization_code", "error": f"fault:{mode}"}
    # The fault answered instead of TikTok's logic, so the code was not spent.
    assert "access_token" in (await tiktok.exchange(code)).json()


@pytest.mark.parametrize(("mode", "status", "code"), [
    ("http_500", 500, "internal_error"),
    ("error_200", 200, "internal_error"),
    ("rate_limit", 429, "rate_limit_exceeded"),
])
async def test_user_info_fault_modes(tiktok: TikTok, mode: str, status: int, code: str) -> None:
    token = (await tiktok.tokens())["access_token"]
    tiktok.state.set_fault("user_info", mode, count=1)
    response = await tiktok.user_info(token)
    assert response.status_code == status
    assert set(response.json()) == {"error"}
    assert response.json()["error"]["code"] == code
    assert (await tiktok.user_info(token)).status_code == 200  # count=1 is used up


@pytest.mark.parametrize("endpoint", ["token", "revoke", "user_info", "authorize"])
async def test_garbage_is_a_200_that_does_not_parse(tiktok: TikTok, endpoint: str) -> None:
    tokens = await tiktok.tokens()
    tiktok.state.set_fault(endpoint, "garbage")
    if endpoint == "token":
        result = await tiktok.refresh(tokens["refresh_token"])
    elif endpoint == "revoke":
        result = await tiktok.revoke(tokens["access_token"])
    elif endpoint == "user_info":
        result = await tiktok.user_info(tokens["access_token"])
    else:
        result = await tiktok.authorize()
    assert result.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(result.text)


async def test_latency_delays_then_answers_normally(tiktok: TikTok) -> None:
    token = (await tiktok.tokens())["access_token"]
    await add_fault(tiktok, endpoint="user_info", mode="latency", latency_ms=120, count=1)
    started = time.monotonic()
    response = await tiktok.user_info(token)
    assert time.monotonic() - started >= 0.12
    assert response.status_code == 200 and response.json()["error"]["code"] == "ok"


async def test_faults_stay_until_cleared_and_respect_their_endpoint(tiktok: TikTok) -> None:
    tokens = await tiktok.tokens()
    await add_fault(tiktok, endpoint="revoke", mode="http_500", count=None)
    for _ in range(3):
        assert (await tiktok.revoke(tokens["access_token"])).status_code == 500
    assert (await tiktok.user_info(tokens["access_token"])).status_code == 200  # other endpoints unaffected
    listed = (await tiktok.client.get("/_emulator/faults")).json()["faults"]
    assert [f["mode"] for f in listed] == ["http_500"]
    assert (await tiktok.client.delete("/_emulator/faults")).status_code == 200
    assert (await tiktok.revoke(tokens["access_token"])).status_code == 200


async def test_wildcard_fault_hits_every_endpoint(tiktok: TikTok) -> None:
    tiktok.state.set_fault("*", "rate_limit", count=2)
    assert (await tiktok.authorize()).status_code == 429
    assert (await tiktok.token(grant_type="client_credentials")).json()["error"] == "rate_limit_exceeded"
    assert (await tiktok.authorize()).status_code == 200


@pytest.mark.parametrize("fault", [
    {"endpoint": "token", "mode": "explode"},
    {"endpoint": "nowhere", "mode": "http_500"},
    {"endpoint": "token", "mode": "latency", "latency_ms": -1},
    {"endpoint": "token", "mode": "http_500", "count": 0},
])
async def test_control_api_rejects_malformed_faults(tiktok: TikTok, fault: dict[str, object]) -> None:
    response = await tiktok.client.post("/_emulator/faults", json=fault)
    assert response.status_code == 400 and response.json()["error"]
    with pytest.raises(ValueError):
        tiktok.state.set_fault(str(fault["endpoint"]), str(fault["mode"]),
                               latency_ms=int(str(fault.get("latency_ms", 0))), count=fault.get("count"))  # type: ignore[arg-type]
