"""A live stack on loopback: the broker and the TikTok emulator as real uvicorn servers, and a real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from broker.app import create_app
from broker.config import Settings
from broker.store.embedded import free_port
from tests.support.browser import Browser
from tests.support.servers import ThreadedServer
from tiktok_emulator import EmulatorConfig, create_emulator_app

ALICE = "7c1e2d34-5f6a-4b7c-8d9e-0a1b2c3d4e5f"


@dataclass
class Stack:
    broker: ThreadedServer
    emulator: ThreadedServer
    settings: Settings
    emulator_app: Any

    @property
    def tiktok(self) -> Any:
        """The emulator's state: the calls it saw, fault switches, issued tokens."""
        return self.emulator_app.state.emulator


def start_stack(base: Settings, *, tiktok_webhooks: bool = False,
                scopes: tuple[str, ...] = ("user.info.basic", "user.info.profile"),
                **emulator_options: Any) -> tuple[Stack, list[ThreadedServer]]:
    broker_port, emulator_port = free_port(), free_port()
    issuer = f"http://127.0.0.1:{broker_port}"
    emulator_url = f"http://127.0.0.1:{emulator_port}"
    settings = base.with_overrides(issuer=issuer, tiktok_authorize_url=f"{emulator_url}/v2/auth/authorize/",
                                   tiktok_api_url=emulator_url,
                                   tiktok_scopes=scopes)
    options = {"redirect_uris": (f"{issuer}/callback",), "public_url": emulator_url, **emulator_options}
    if tiktok_webhooks:  # the emulator delivers its signed webhooks to the broker, as TikTok would
        options["webhook_url"] = f"{issuer}/webhooks/tiktok"
    emulator_app = create_emulator_app(EmulatorConfig(**options))
    emulator = ThreadedServer(emulator_app, emulator_port).start()
    broker = ThreadedServer(create_app(settings), broker_port).start()
    return Stack(broker, emulator, settings, emulator_app), [broker, emulator]


@contextmanager
def live_stack(base: Settings, **options: Any) -> Iterator[Stack]:
    """start_stack for the length of a block; the servers stop whatever happens in it."""
    running, servers = start_stack(base, **options)
    try:
        yield running
    finally:
        for server in servers:
            server.stop()


def write_clients(directory: Path, text: str) -> Path:
    """A clients file (BROKER_CLIENTS_FILE) holding `text`."""
    path = directory / "clients.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def stack(base_settings: Settings) -> Iterator[Stack]:
    with live_stack(base_settings) as running:
        yield running


@pytest.fixture
def browser() -> Iterator[Browser]:
    person = Browser()
    yield person
    person.close()
