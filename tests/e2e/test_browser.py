"""A newcomer's first login, in a real headless Chromium, against `broker dev` started as a command."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from broker.store.embedded import free_port
from tests.support.chromium import CHROMIUM_ARGS, chromium_path

playwright = pytest.importorskip("playwright.sync_api")


def wait_until_up(url: str, process: subprocess.Popen[str], deadline: float) -> None:
    while time.monotonic() < deadline:
        assert process.poll() is None, "broker dev exited early"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


def test_a_newcomer_signs_in_with_broker_dev_alone(tmp_path: Path) -> None:
    executable = chromium_path()
    port, emulator_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("BROKER_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "broker", "dev", "--port", str(port), "--emulator-port", str(emulator_port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/readyz", process, time.monotonic() + 30)
        with playwright.sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_role("link", name="Continue with TikTok").click()
            page.wait_for_url(re.compile(rf"http://127\.0\.0\.1:{emulator_port}/v2/auth/authorize/.*"))
            page.get_by_label("Someone new:").check()
            page.get_by_placeholder("Type a display name").fill("Newcomer Nina")
            page.get_by_role("button", name="Allow").click()
            page.wait_for_url(f"http://127.0.0.1:{port}/")
            assert page.get_by_role("heading", name="You are signed in with TikTok").is_visible()
            body = page.inner_text("body")
            assert "Newcomer Nina" in body
            assert "tiktok_open_id" in body and "user.info.basic" in body
            cookies = {c["name"]: c for c in page.context.cookies()}
            assert cookies["broker_session"]["httpOnly"] and cookies["broker_session"]["sameSite"] == "Lax"
            browser.close()
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
    assert output.count(f"Open http://127.0.0.1:{port}/") == 1
    assert "emulator-client-secret" not in output  # dev mode names the defaults it fills, never a secret
