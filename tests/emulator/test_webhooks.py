"""Webhooks: the contract's signature example, delivery on revoke, retries with backoff, duplicates."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable

import httpx

from tiktok_emulator.webhooks import envelope, retry_delays, sign, signature_header

from .conftest import MakeTikTok
from .support import KEY, MARA, SECRET, TikTok

HOOK = "https://receiver.example/tiktok/webhook"
FAST = {"webhook_url": HOOK, "webhook_retry_initial": 0.001, "webhook_retry_factor": 2.0,
        "webhook_retry_horizon": 0.01}


def test_signer_matches_the_contract_worked_example() -> None:
    body = envelope(client_key="awexamplekey123", event="authorization.removed", create_time=1767225600,
                    user_openid="-000Example_OpenId-abc123", content={"reason": 1})
    assert body == (b'{"client_key":"awexamplekey123","event":"authorization.removed","create_time":1767225600,'
                    b'"user_openid":"-000Example_OpenId-abc123","content":"{\\"reason\\":1}"}')
    expected = "31a781315caacc91c119dadcbe304c05a658ec180c7eed89925aa45c901a59c6"
    assert sign("emulator-client-secret-123", 1767225605, body) == expected
    assert signature_header("emulator-client-secret-123", 1767225605, body) == f"t=1767225605,s={expected}"


def test_retry_schedule_is_exponential_within_the_horizon() -> None:
    assert retry_delays(1.0, 2.0, 40.0) == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert sum(retry_delays(60.0, 2.0, 72 * 3600.0)) <= 72 * 3600.0
    assert retry_delays(5.0, 2.0, 4.0) == []


class Receiver:
    """Answers with the given statuses in turn (then 200) and verifies every signature like a real app."""

    def __init__(self, tiktok_ref: Callable[[], TikTok], statuses: tuple[int, ...] = ()) -> None:
        self.tiktok_ref = tiktok_ref
        self.statuses = list(statuses)
        self.events: list[dict[str, object]] = []
        self.tokens_alive_on_arrival: list[bool] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        t, s = (part.split("=", 1)[1] for part in request.headers["tiktok-signature"].split(","))
        expected = hmac.new(SECRET.encode(), f"{t}.".encode() + request.content, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(s, expected)
        self.events.append(json.loads(request.content))
        tokens = self.tiktok_ref().state.issued_tokens_for(MARA)
        self.tokens_alive_on_arrival.append(any(token.active for token in tokens))
        return httpx.Response(self.statuses.pop(0) if self.statuses else 200)


def with_receiver(make_tiktok: MakeTikTok, statuses: tuple[int, ...] = (), **config: object) -> tuple[TikTok, Receiver]:
    holder: list[TikTok] = []
    receiver = Receiver(lambda: holder[0], statuses)
    tiktok = make_tiktok(webhook_client=httpx.AsyncClient(transport=httpx.MockTransport(receiver.handle)),
                         **{**FAST, **config})
    holder.append(tiktok)
    return tiktok, receiver


async def test_revoke_sends_a_signed_authorization_removed(make_tiktok: MakeTikTok) -> None:
    tiktok, receiver = with_receiver(make_tiktok)
    tokens = await tiktok.tokens()
    await tiktok.revoke(tokens["access_token"])
    await tiktok.state.webhooks.drain()
    [event] = receiver.events
    assert event["client_key"] == KEY and event["event"] == "authorization.removed"
    assert event["user_openid"] == MARA
    assert event["create_time"] == int(tiktok.state.clock.now())
    assert isinstance(event["content"], str) and json.loads(event["content"]) == {"reason": 5}
    assert receiver.tokens_alive_on_arrival == [False]


async def test_failed_deliveries_are_retried_until_a_200(make_tiktok: MakeTikTok) -> None:
    tiktok, receiver = with_receiver(make_tiktok, statuses=(500, 503))
    await tiktok.tokens()
    tiktok.state.remove_authorization(MARA, 1)
    await tiktok.state.webhooks.drain()
    assert [d.status for d in tiktok.state.webhooks.deliveries] == [500, 503, 200]
    assert [d.attempt for d in tiktok.state.webhooks.deliveries] == [1, 2, 3]
    assert len({json.dumps(e) for e in receiver.events}) == 1  # the same event each time


async def test_delivery_gives_up_at_the_horizon(make_tiktok: MakeTikTok) -> None:
    tiktok, _ = with_receiver(make_tiktok, statuses=(500,) * 50)
    tiktok.state.remove_authorization(MARA, 0)
    await tiktok.state.webhooks.drain()
    assert len(tiktok.state.webhooks.deliveries) == 1 + len(retry_delays(0.001, 2.0, 0.01))
    assert all(d.status == 500 for d in tiktok.state.webhooks.deliveries)


async def test_forced_duplicate_delivery(make_tiktok: MakeTikTok) -> None:
    tiktok, receiver = with_receiver(make_tiktok, webhook_duplicate_delivery=True)
    tiktok.state.remove_authorization(MARA, 4)
    await tiktok.state.webhooks.drain()
    assert len(receiver.events) == 2 and receiver.events[0] == receiver.events[1]
    assert [d.duplicate for d in tiktok.state.webhooks.deliveries] == [False, True]


async def test_control_trigger_revokes_first_then_sends(make_tiktok: MakeTikTok) -> None:
    tiktok, receiver = with_receiver(make_tiktok)
    tokens = await tiktok.tokens()
    response = await tiktok.client.post("/_emulator/webhooks/authorization-removed",
                                        json={"open_id": MARA, "reason": 2, "duplicate": True})
    assert response.status_code == 202 and response.json()["revoked_tokens"] == 2
    await tiktok.state.webhooks.drain()
    assert [json.loads(str(e["content"])) for e in receiver.events] == [{"reason": 2}] * 2
    assert receiver.tokens_alive_on_arrival == [False, False]
    assert (await tiktok.user_info(tokens["access_token"])).status_code == 401
    deliveries = (await tiktok.client.get("/_emulator/webhooks")).json()["deliveries"]
    assert [d["status"] for d in deliveries] == [200, 200]
    bad = await tiktok.client.post("/_emulator/webhooks/authorization-removed", json={"open_id": MARA, "reason": 6})
    assert bad.status_code == 400


async def test_no_webhook_url_means_no_delivery(tiktok: TikTok) -> None:
    await tiktok.revoke((await tiktok.tokens())["access_token"])
    await tiktok.state.webhooks.drain()
    assert tiktok.state.webhooks.deliveries == []
