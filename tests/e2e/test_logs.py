"""No log line of a full flow holds a credential, and every line of a request carries its request id."""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from broker.flows.tokens import SESSION_GRANT
from broker.logs import JsonFormatter, request_id
from tests.e2e.conftest import ALICE, Stack
from tests.support.browser import Browser


def raw_text(record: logging.LogRecord) -> str:
    """What a record carries before the formatter's safety net: message, arguments, extras, traceback."""
    parts = [record.getMessage(), *(str(v) for k, v in vars(record).items() if k not in ("msg", "args"))]
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)


def test_a_full_flow_logs_no_secret(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)  # what production logs (broker lines at DEBUG are checked too, below)
    logging.getLogger("broker").setLevel(logging.DEBUG)
    for quiet in ("httpx", "httpcore"):  # as broker.logs.configure() sets them (they print URLs and headers)
        logging.getLogger(quiet).setLevel(logging.WARNING)
    browser = Browser()
    consent = browser.get(f"{stack.broker.url}/login")
    redirect = browser.consent(consent, user=ALICE, follow=False)
    callback = redirect.headers["location"]
    secrets_seen = [value for key, value in parse_qs(urlsplit(callback).query).items() if key in ("code", "state")]
    assert browser.get(callback).status_code == 200
    secrets_seen += [v[0] for v in secrets_seen if isinstance(v, list)]
    secrets_seen = [s for s in secrets_seen if isinstance(s, str)]
    secrets_seen.append(browser.client.cookies["broker_session"])
    secrets_seen.append(browser.client.cookies["broker_login"])
    jwt = browser.client.get(f"{stack.broker.url}/auth/verify").headers["authorization"][7:]
    pair = browser.client.post(f"{stack.broker.url}/oauth/token", data={"grant_type": SESSION_GRANT},
                               headers={"Origin": stack.broker.url}).json()
    newer = browser.client.post(f"{stack.broker.url}/oauth/token",
                                data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}).json()
    browser.client.post(f"{stack.broker.url}/oauth/token",  # a reuse after the grace window would be logged
                        data={"grant_type": "refresh_token", "refresh_token": "brt1." + "x" * 100})
    httpx.get(f"{stack.broker.url}/tiktok/v2/user/info/", params={"fields": "open_id,display_name"},
              headers={"Authorization": f"Bearer {newer['access_token']}"})
    failing = Browser()  # a second login that TikTok fails (with a log_id), logged as a warning
    failed_callback = failing.consent(failing.get(f"{stack.broker.url}/login?prompt=login"), user=ALICE,
                                      follow=False).headers["location"]
    stack.tiktok.set_fault("token", "error_200", count=1)
    assert failing.get(failed_callback).status_code == 503
    browser.client.post(f"{stack.broker.url}/oauth/revoke", data={"token": jwt})
    browser.client.post(f"{stack.broker.url}/logout", headers={"Origin": stack.broker.url})
    failing.close()
    browser.close()
    for name in ("broker", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.NOTSET)
    secrets_seen += [jwt, pair["access_token"], pair["refresh_token"], newer["access_token"], newer["refresh_token"],
                     stack.settings.tiktok_client_secret.reveal()]
    secrets_seen += [t.token for t in stack.tiktok.issued_tokens_for(ALICE)]
    assert len(caplog.records) > 5
    broker_records = [r for r in caplog.records if r.name.startswith("broker")]
    assert broker_records, "the flow logged nothing of the broker's"
    for record in caplog.records:
        text = raw_text(record)
        for secret in secrets_seen:
            assert secret not in text, (record.name, record.getMessage())


def test_request_ids_are_echoed_and_logged(stack: Stack) -> None:
    response = httpx.get(f"{stack.broker.url}/auth/verify", headers={"X-Request-Id": "trace-abc.123"})
    assert response.headers["x-request-id"] == "trace-abc.123"
    made_up = [httpx.get(f"{stack.broker.url}/healthz", headers={"X-Request-Id": "bad id\twith spaces"})
               .headers["x-request-id"] for _ in range(2)]
    assert all(re.fullmatch(r"[0-9a-f]{13,}", made) for made in made_up) and made_up[0] != made_up[1]
    token = request_id.set("req-42")
    try:
        leaked = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2ln"
        line = JsonFormatter().format(logging.LogRecord("broker.test", logging.INFO, __file__, 1,
                                                        "token %s leaked", (leaked,), None))
    finally:
        request_id.reset(token)
    entry = json.loads(line)
    assert entry["request_id"] == "req-42" and entry["level"] == "info"
    assert "eyJ" not in entry["message"] and "[redacted]" in entry["message"]
