"""Third-party Node libraries, unchanged, against a live broker: an app written with openid-client, and one with
oauth4webapi, each verifying every ID token and the back-channel logout token with jose against the JWKS.

The libraries are pinned in tests/node/package.json and package-lock.json and installed with `npm ci`. The app
(tests/node/rp.mjs) asks this test to play the browser (TikTok's page, the broker's consent page) and to hand
it the logout token the broker sends to its back-channel URI. Without node these tests are skipped with a
message; CI installs node (.ci/run) and fails if it is missing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.config import Settings
from tests.e2e.conftest import Stack, live_stack, write_clients
from tests.support.backchannel import LogoutReceiver, logout_receiver
from tests.support.browser import Browser
from tests.support.relying_parties import BYE, KINDS, Kind, clients_yaml, until_app

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
LIBRARIES = ("openid-client", "oauth4webapi")
RUN_DEADLINE = 90  # seconds for one app's whole run


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the Node client tests: {reason} (see .ci/run)")
    pytest.skip(f"Node client libraries not tested: {reason}")


@pytest.fixture(scope="session")
def node() -> str:
    """node, with the pinned libraries installed (npm ci, once, when the lock changed)."""
    found = shutil.which("node")
    if found is None or shutil.which("npm") is None:
        _unavailable("node and npm are not installed (Node 20 or newer)")
        raise AssertionError("unreachable")
    installed = NODE_DIR / "node_modules" / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        result = subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                                capture_output=True, text=True, timeout=300, check=False)
        if result.returncode != 0:
            _unavailable(f"npm ci failed: {result.stderr.strip()[-300:]}")
    return found


@pytest.fixture
def receiver() -> Iterator[LogoutReceiver]:
    with logout_receiver() as running:
        yield running


@pytest.fixture
def stack(base_settings: Settings, tmp_path: Path, receiver: LogoutReceiver) -> Iterator[Stack]:
    clients = write_clients(tmp_path, clients_yaml(receiver.url))
    with live_stack(base_settings.with_overrides(clients_file=clients)) as running:
        yield running


def run_app(node: str, library: str, kind: Kind, stack: Stack, receiver: LogoutReceiver) -> dict[str, object]:
    """Run the app to its end, answering its requests for a browser and for the logout token."""
    config = {"issuer": stack.settings.issuer, "client_id": kind.client_id, "client_secret": kind.secret,
              "auth_method": kind.auth_method, "redirect_uri": kind.redirect_uri, "post_logout_redirect_uri": BYE,
              "id_token_alg": kind.id_token_alg}
    process = subprocess.Popen([node, "rp.mjs", library, json.dumps(config)], cwd=NODE_DIR, text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watchdog = threading.Timer(RUN_DEADLINE, process.kill)
    watchdog.start()
    browser = Browser()
    try:
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        for line in process.stdout:
            request = json.loads(line)
            if "done" in request:
                return dict(request["done"])
            if "browse" in request:
                landed, asked = until_app(stack, browser, request["browse"], at_tiktok=request["at_tiktok"])
                answer: dict[str, object] = {"landed": landed, "asked": asked}
            else:
                answer = {"logout_token": receiver.wait_for(1)[-1]}
            process.stdin.write(json.dumps(answer) + "\n")
            process.stdin.flush()
        process.wait(timeout=10)
        raise AssertionError(f"{library} app failed (exit {process.returncode}):\n{process.stderr.read()}")
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
        browser.close()


@pytest.mark.parametrize("kind", KINDS.values(), ids=KINDS.keys())
@pytest.mark.parametrize("library", LIBRARIES)
def test_node_apps_complete_every_flow(node: str, library: str, kind: Kind, stack: Stack,
                                       receiver: LogoutReceiver) -> None:
    summary = run_app(node, library, kind, stack, receiver)
    assert summary["sub"] and summary["sid"]
    assert len(receiver.tokens) == 1  # one session ended, one logout token for this app
