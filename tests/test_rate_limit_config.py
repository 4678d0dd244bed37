"""BROKER_RATE_LIMITS and BROKER_RATE_LIMIT_*: the format, the defaults, and every mistake named."""

from __future__ import annotations

import pytest

from broker.config import RateLimit, load_settings
from broker.errors import ConfigError


@pytest.mark.parametrize(("text", "expected"), [
    ("300/5m", RateLimit(300, 300, 300)), ("300/5m burst=60", RateLimit(300, 300, 60)),
    ("10/1s", RateLimit(10, 1, 10)), ("10/30", RateLimit(10, 30, 10)), ("1000/1h  burst=5", RateLimit(1000, 3600, 5)),
])
def test_a_limit_is_requests_per_period_with_an_optional_burst(text: str, expected: RateLimit) -> None:
    assert load_settings({"BROKER_RATE_LIMIT_OAUTH": text}).rate_limit_oauth == expected


def test_defaults_are_on_and_generous() -> None:
    settings = load_settings({})
    assert settings.rate_limits is True
    for limit in (settings.rate_limit_login, settings.rate_limit_oauth, settings.rate_limit_webhook,
                  settings.rate_limit_client):
        assert limit.requests / limit.period >= 1 and limit.burst >= 60  # a person never comes near
    assert load_settings({"BROKER_RATE_LIMITS": "off"}).rate_limits is False


def test_every_bad_limit_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({"BROKER_RATE_LIMIT_LOGIN": "lots", "BROKER_RATE_LIMIT_OAUTH": "0/1m",
                       "BROKER_RATE_LIMIT_WEBHOOK": "5/2d", "BROKER_RATE_LIMIT_CLIENT": "5000/1s",
                       "BROKER_RATE_LIMITS": "sometimes"})
    named = {line.split(":")[0] for line in refused.value.problems}
    assert named == {"BROKER_RATE_LIMIT_LOGIN", "BROKER_RATE_LIMIT_OAUTH", "BROKER_RATE_LIMIT_WEBHOOK",
                     "BROKER_RATE_LIMIT_CLIENT", "BROKER_RATE_LIMITS"}
