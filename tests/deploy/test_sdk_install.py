"""The SDK installed alone, as a downstream service installs it: into an empty virtualenv it brings httpx, PyJWT,
cryptography and their own dependencies, nothing of the server, and it verifies a running broker's token."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.app import create_app
from broker.config import Settings
from broker.store.embedded import free_port
from tests.sdk.conftest import make_service
from tests.support.servers import ThreadedServer

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "sdk.txt"
# What a service that only verifies tokens may have to install: the SDK's two dependencies and theirs.
ALLOWED = {"httpx", "pyjwt", "cryptography", "anyio", "certifi", "cffi", "h11", "httpcore", "idna", "pycparser",
           "sniffio", "typing-extensions", "exceptiongroup"}
SERVER_ONLY = ("redis", "uvicorn", "starlette", "jinja2", "yaml", "prometheus_client", "multipart", "broker",
               "tiktok_emulator")

VERIFY = """
import asyncio, sys
from broker_sdk import BrokerVerifier, TokenRejected

async def main() -> None:
    verifier = BrokerVerifier(sys.argv[1], audience=sys.argv[2])
    print((await verifier.verify(sys.argv[3]))["sub"])
    try:
        await verifier.verify(sys.argv[3][:-4] + "AAAA")
    except TokenRejected as rejected:
        print(rejected.reason)
    await verifier.aclose()

asyncio.run(main())
"""


def _names(lines: str) -> set[str]:
    return {line.split("==")[0].strip().lower().replace("_", "-") for line in lines.splitlines()
            if "==" in line and not line.startswith(("#", " "))}


@pytest.fixture(scope="module")
def sdk_venv() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="sdk-venv-") as directory:
        venv = Path(directory)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        python = str(venv / "bin" / "python")
        for command in ([python, "-m", "pip", "install", "--quiet", "--require-hashes", "--no-deps", "-r", str(LOCK)],
                        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                         "--wheel-dir", str(venv / "wheel"), str(ROOT / "sdk")]):
            result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
            assert result.returncode == 0, result.stdout + result.stderr
        shutil.rmtree(ROOT / "sdk" / "build", ignore_errors=True)  # what building the wheel left in the working tree
        wheel = next((venv / "wheel").glob("*.whl"))
        installed = subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
                                   capture_output=True, text=True, timeout=120, check=False)
        assert installed.returncode == 0, installed.stderr
        yield venv


def test_the_lock_of_the_sdk_holds_only_httpx_pyjwt_cryptography_and_theirs() -> None:
    assert {"httpx", "pyjwt", "cryptography"} <= _names(LOCK.read_text()) <= ALLOWED


def test_the_sdk_alone_is_complete_and_carries_nothing_of_the_server(sdk_venv: Path) -> None:
    python = str(sdk_venv / "bin" / "python")
    checked = subprocess.run([python, "-m", "pip", "check"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout  # every declared dependency is there
    frozen = subprocess.run([python, "-m", "pip", "freeze", "--all"], capture_output=True, text=True, check=True)
    installed = _names(frozen.stdout) - {"pip", "setuptools", "wheel", "tiktok-broker-sdk"}
    assert installed <= ALLOWED, installed - ALLOWED
    for module in SERVER_ONLY:
        absent = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True, check=False,
                                cwd=sdk_venv)  # not the checkout, whose packages would be importable from there
        assert absent.returncode != 0, f"{module} is importable beside the SDK alone"
    # The middleware is an extra: without Starlette it says so, and nothing else breaks.
    asgi = subprocess.run([python, "-c", "import broker_sdk.asgi"], capture_output=True, text=True, check=False,
                          cwd=sdk_venv)
    assert "No module named 'starlette'" in asgi.stderr


def test_the_sdk_alone_verifies_a_running_brokers_token(sdk_venv: Path, base_settings: Settings) -> None:
    port = free_port()
    settings = base_settings.with_overrides(issuer=f"http://127.0.0.1:{port}")
    token = make_service(settings.keys_dir, issuer=settings.issuer, audience=settings.token_audience)[1].issue(
        sub="dana", sid="s1", scope="openid").token
    with ThreadedServer(create_app(settings), port):
        result = subprocess.run([str(sdk_venv / "bin" / "python"), "-c", VERIFY, settings.issuer,
                                 settings.token_audience, token], capture_output=True, text=True, timeout=60,
                                cwd=sdk_venv, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["dana", "bad", "signature"]
