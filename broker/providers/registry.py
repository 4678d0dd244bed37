"""Provider registry: maps a provider name to its factory; the only module that names concrete providers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from broker.clock import Clock
from broker.metrics import Metrics
from broker.providers.base import Provider
from broker.providers.tiktok import TikTokProvider

# Connecting should be quick whatever the overall budget; a slow TLS handshake means TikTok is in trouble.
_MAX_CONNECT_SECONDS = 3.0


@dataclass(frozen=True)
class ProviderSettings:
    """What any provider needs to be built; the composition root fills it from `Settings`."""

    http_client: httpx.AsyncClient
    client_key: str
    client_secret: str = field(repr=False)
    authorize_url: str
    api_url: str
    clock: Clock
    timeout_seconds: float
    metrics: Metrics | None = None  # the application's; None: the provider keeps its own, unexported


def _tiktok(settings: ProviderSettings) -> Provider:
    return TikTokProvider(
        settings.http_client, client_key=settings.client_key, client_secret=settings.client_secret,
        clock=settings.clock, authorize_url=settings.authorize_url, api_url=settings.api_url,
        timeout=httpx.Timeout(settings.timeout_seconds,
                              connect=min(_MAX_CONNECT_SECONDS, settings.timeout_seconds)),
        metrics=settings.metrics)


_FACTORIES: dict[str, Callable[[ProviderSettings], Provider]] = {"tiktok": _tiktok}


def known_providers() -> tuple[str, ...]:
    return tuple(sorted(_FACTORIES))


def create_provider(name: str, *, http_client: httpx.AsyncClient, client_key: str, client_secret: str,
                    authorize_url: str, api_url: str, clock: Clock, timeout_seconds: float,
                    metrics: Metrics | None = None) -> Provider:
    """Build the named provider around an injected HTTP client; unknown names are a configuration error."""
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ValueError(f"unknown provider {name!r}; known providers: {', '.join(known_providers())}")
    if not timeout_seconds > 0:  # also rejects NaN
        raise ValueError(f"timeout_seconds must be positive, got {timeout_seconds!r}")
    return factory(ProviderSettings(
        http_client=http_client, client_key=client_key, client_secret=client_secret,
        authorize_url=authorize_url, api_url=api_url, clock=clock, timeout_seconds=timeout_seconds,
        metrics=metrics))
