"""The image, replayed without a container engine: the Dockerfile's own steps build the server's wheels, install
them from the lock into a clean virtualenv without pip, and a non-root user runs it with the image's environment,
entrypoint and command; its health check, /healthz and /readyz must answer. The steps are read from the
Dockerfile, so the two cannot drift apart unnoticed."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from broker.store.embedded import free_port
from tests.cli import CLIENT_KEY, CLIENT_SECRET
from tests.conftest import vault_entry, vault_key

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
INSTALL_TIMEOUT = 300


def instructions(stage: str) -> list[tuple[str, str]]:
    """(instruction, arguments) of one stage of the Dockerfile, continuation lines joined, comments dropped."""
    lines: list[str] = []
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if lines and lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1].rstrip() + " " + stripped
        else:
            lines.append(stripped)
    found: list[tuple[str, str]] = []
    inside = False
    for line in lines:
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            inside = rest.split()[-1] == stage
            continue
        if inside:
            found.append((word.upper(), rest))
    assert found, f"no stage {stage!r} in the Dockerfile"
    return found


def shell_steps(stage: str) -> list[list[str]]:
    """Every command of the stage's RUN instructions, split on &&."""
    steps: list[list[str]] = []
    for word, rest in instructions(stage):
        if word == "RUN":
            steps += [shlex.split(part) for part in rest.split("&&")]
    return steps


def image_environment(stage: str) -> dict[str, str]:
    environment: dict[str, str] = {}
    for word, rest in instructions(stage):
        if word == "ENV":
            for assignment in shlex.split(rest):
                name, _, value = assignment.partition("=")
                environment[name] = value
    return environment


def exec_form(stage: str, instruction: str) -> list[str]:
    values = [json.loads(rest) for word, rest in instructions(stage) if word == instruction]
    assert values, f"no {instruction} in stage {stage}"
    found: list[str] = values[-1]
    return found


def runtime_user() -> int:
    users = [rest for word, rest in instructions("runtime") if word == "USER"]
    uid = int(users[-1].split(":")[0])
    assert uid != 0
    return uid


def usable_by_anyone(path: Path) -> bool:
    """Whether every user may run this file: it and each directory above it are open to others."""
    resolved = path.resolve()
    return all(os.stat(part).st_mode & 0o001 for part in (resolved, *resolved.parents))


def runtime_python() -> str:
    """The interpreter the image's virtualenv is made from. The image's is root's but open to every user; this
    machine's may live in root's home, which the image's user could not enter: then the system's python3."""
    base = Path(getattr(sys, "_base_executable", sys.executable))
    if os.geteuid() != 0 or usable_by_anyone(base):
        return str(base)
    system = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    if system is None or not usable_by_anyone(Path(system)):
        pytest.fail("no Python interpreter that a non-root user may run (install Debian's python3-venv)")
    return system


def translate(step: list[str], venv: Path, wheels: Path) -> list[str]:
    """A build-stage command with the image's paths replaced by this test's (and its globs expanded, as the
    shell of a RUN instruction does)."""
    command: list[str] = []
    if step[:3] == ["python", "-m", "venv"]:
        step = [runtime_python(), *step[1:]]
    for part in step:
        part = part.replace("/opt/broker", str(venv)).replace("/wheels", str(wheels))
        if part == "python":
            command.append(sys.executable)
        elif "*" in part:
            matches = sorted(str(found) for found in Path(part).parent.glob(Path(part).name))
            assert matches, f"nothing matches {part}"
            command += matches
        else:
            command.append(part)
    return command


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """/opt/broker as the build stage makes it, in a directory every user may read (as in the image) and none
    but root may write."""
    base = Path(tempfile.mkdtemp(prefix="broker-image-"))
    base.chmod(0o755)
    venv, wheels = base / "opt-broker", base / "wheels"
    steps = shell_steps("build")
    server_steps = [step for step in steps if "/opt/broker" in " ".join(step) or "/wheels/server" in " ".join(step)]
    assert any("--require-hashes" in step and "requirements/server.txt" in step for step in server_steps), \
        "the image no longer installs the server's dependencies from the lock"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    try:
        for step in server_steps:
            command = translate(step, venv, wheels)
            result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                                    timeout=INSTALL_TIMEOUT, check=False)
            assert result.returncode == 0, f"{shlex.join(command)}\n{result.stdout}\n{result.stderr}"
        for path in [base, *base.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
        yield venv
    finally:
        shutil.rmtree(base, ignore_errors=True)
        for package in (ROOT, ROOT / "sdk"):  # what building the wheels left in the working tree
            shutil.rmtree(package / "build", ignore_errors=True)


def as_runtime_user() -> dict[str, object]:
    """Popen arguments that drop to the image's USER when the tests run as root (as CI does)."""
    if os.geteuid() != 0:
        return {}
    uid = runtime_user()
    return {"user": uid, "group": uid, "extra_groups": []}


def test_the_image_holds_the_server_and_its_sdk_but_never_the_emulator(image: Path) -> None:
    python = str(image / "bin" / "python")
    assert not (image / "bin" / "pip").exists()  # no installer in the running image
    found = subprocess.run([python, "-c", "import broker, broker_sdk, jwt, redis, uvicorn"], capture_output=True,
                           text=True, check=False)
    assert found.returncode == 0, found.stderr
    absent = subprocess.run([python, "-c", "import tiktok_emulator"], capture_output=True, text=True, check=False)
    assert absent.returncode != 0 and "No module named 'tiktok_emulator'" in absent.stderr
    checked = subprocess.run([sys.executable, "-m", "pip", "--python", python, "check"], capture_output=True,
                             text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_non_root_user_serves_with_the_images_environment_and_command(image: Path, redis_url: str) -> None:
    run_as = as_runtime_user()
    home = Path(tempfile.mkdtemp(prefix="broker-image-run-"))
    home.chmod(0o755)
    keys = home / "keys"  # the image's /keys: owned by the broker's user
    keys.mkdir()
    if run_as:
        os.chown(keys, runtime_user(), runtime_user())
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    image_env = image_environment("runtime")
    env = {name: value for name, value in image_env.items() if name != "PATH"}
    assert env["BROKER_KEYS_DIR"] == "/keys"
    env.update({
        "PATH": f"{image / 'bin'}:/usr/bin:/bin", "HOME": str(home), "BROKER_KEYS_DIR": str(keys),
        "BROKER_ISSUER": issuer, "BROKER_REDIS_URL": redis_url, "BROKER_VAULT_KEYS": vault_entry(vault_key()),
        "BROKER_TIKTOK_CLIENT_KEY": CLIENT_KEY, "BROKER_TIKTOK_CLIENT_SECRET": CLIENT_SECRET,
    })
    entrypoint = exec_form("runtime", "ENTRYPOINT")
    command = exec_form("runtime", "CMD")
    exposed = [rest for word, rest in instructions("runtime") if word == "EXPOSE"][-1]
    assert command[command.index("--port") + 1] == exposed
    command[command.index("--port") + 1] = str(port)
    broker = str(image / "bin" / entrypoint[0])
    try:
        made = subprocess.run([broker, "keys", "new"], env=env, cwd=home, capture_output=True, text=True,
                              timeout=60, check=False, **run_as)  # type: ignore[call-overload]
        assert made.returncode == 0, made.stderr
        checked = subprocess.run([broker, "check-config"], env=env, cwd=home, capture_output=True, text=True,
                                 timeout=60, check=False, **run_as)  # type: ignore[call-overload]
        assert checked.returncode == 0, checked.stdout + checked.stderr
        process = subprocess.Popen([broker, *entrypoint[1:], *command], env=env, cwd=home, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, **run_as)  # type: ignore[call-overload]
        try:
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
                try:
                    if httpx.get(f"{issuer}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the broker did not answer /healthz"
                time.sleep(0.1)
            ready = httpx.get(f"{issuer}/readyz", timeout=5)
            assert ready.status_code == 200 and ready.json()["checks"] == {"redis": "ok", "signing_key": "ok"}
            probe = [str(image / "bin" / "python"), *_healthcheck_command()[1:]]
            probe[-1] = probe[-1].replace(f"127.0.0.1:{exposed}", f"127.0.0.1:{port}")
            assert subprocess.run(probe, env=env, timeout=10, check=False, **run_as).returncode == 0  # type: ignore[call-overload]
            if run_as:  # the server really runs as the image's user, not as root
                status = Path(f"/proc/{process.pid}/status").read_text()
                uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
                assert uid_line.split()[1] == str(runtime_user())
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _healthcheck_command() -> list[str]:
    checks = [rest for word, rest in instructions("runtime") if word == "HEALTHCHECK"]
    assert checks, "the image has no HEALTHCHECK"
    found: list[str] = json.loads(checks[-1][checks[-1].index("CMD") + 3:].strip())
    return found
