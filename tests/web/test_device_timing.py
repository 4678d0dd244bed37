"""The device grant's clock (RFC 8628 section 3.5), on a frozen clock: the interval grows by 5 seconds with each
slow_down, and a code past its 600 seconds is expired_token, for the device and on /device."""

from __future__ import annotations

from pathlib import Path

import httpx

from broker.config import Settings
from broker.flows.device import normalized_user_code, shown
from tests.support.inprocess import InProcess, in_process

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def clients(tmp_path: Path) -> Path:
    path = tmp_path / "clients.yaml"
    path.write_text(f'clients:\n  - client_id: tv\n    grant_types: ["{DEVICE_GRANT}"]\n')
    return path


async def start(broker: InProcess) -> dict[str, str]:
    answer = await broker.broker.post("/oauth/device_authorization", data={"client_id": "tv"})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def poll_error(broker: InProcess, device_code: str) -> str:
    answer: httpx.Response = await broker.broker.post("/oauth/token", data={
        "grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": "tv"})
    assert answer.status_code == 400, answer.text
    return str(answer.json()["error"])


async def test_each_slow_down_adds_five_seconds_to_the_interval(base_settings: Settings, tmp_path: Path) -> None:
    async with in_process(base_settings, clients_file=clients(tmp_path)) as broker:
        code = (await start(broker))["device_code"]
        assert await poll_error(broker, code) == "authorization_pending"
        broker.clock.advance(4)
        assert await poll_error(broker, code) == "slow_down"  # under 5 s: the interval becomes 10
        broker.clock.advance(9)
        assert await poll_error(broker, code) == "slow_down"  # under 10 s: 15 from now on
        broker.clock.advance(15)
        assert await poll_error(broker, code) == "authorization_pending"


async def test_an_old_code_is_expired_for_the_device_and_the_person(base_settings: Settings, tmp_path: Path) -> None:
    async with in_process(base_settings, clients_file=clients(tmp_path)) as broker:
        started = await start(broker)
        await broker.sign_in()
        broker.clock.advance(599)
        assert await poll_error(broker, started["device_code"]) == "authorization_pending"
        broker.clock.advance(1)
        assert await poll_error(broker, started["device_code"]) == "expired_token"
        page = await broker.broker.get("/device", params={"user_code": started["user_code"]})
        assert page.status_code == 400 and "not valid, or has expired" in page.text


def test_user_codes_are_read_as_people_type_them() -> None:
    assert normalized_user_code("wdjb-mjht") == normalized_user_code(" WDJB MJHT ") == "WDJBMJHT"
    assert shown("WDJBMJHT") == "WDJB-MJHT"
    for typed in ("WDJB-MJH", "WDJB-MJHA", "WDJB-MJHT-X", "ЖDJB-MJHT", ""):  # short, a vowel, long, not ASCII
        assert normalized_user_code(typed) is None
