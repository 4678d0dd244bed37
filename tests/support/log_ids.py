"""TikTok's log_ids as the emulator hands them out, so tests can look for them in the broker's answers and logs."""

from __future__ import annotations

import pytest

from tiktok_emulator import ids


def record_log_ids(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every log_id the emulator mints from now on (bodies and X-Tt-Logid headers share them), in order."""
    issued: list[str] = []
    mint = ids.log_id

    def recording(now: float) -> str:
        issued.append(mint(now))
        return issued[-1]

    monkeypatch.setattr(ids, "log_id", recording)
    return issued
