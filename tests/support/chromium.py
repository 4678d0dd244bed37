"""Headless Chromium (Debian's package) driven by Playwright, for the tests that need a real browser."""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    """The browser binary; in CI its absence is a failure, on a laptop it skips the test."""
    found = os.environ.get("BROKER_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("CI must install Debian's chromium (see .ci/run)")
    pytest.skip("no chromium on this machine (apt-get install chromium)")
