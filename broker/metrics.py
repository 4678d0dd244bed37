"""Prometheus metrics, one registry per application (so tests and several apps in a process never collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.tiktok_revoke_failures = Counter(
            "broker_tiktok_revoke_failures_total", "TikTok revoke calls that failed and were queued for retry",
            registry=self.registry)
        self.tiktok_revokes = Counter(
            "broker_tiktok_revokes_total", "Grants revoked at TikTok, by outcome", ["outcome"], registry=self.registry)
        self.tiktok_revoke_backlog = Gauge(
            "broker_tiktok_revoke_backlog", "Revocations waiting in the durable retry queue", registry=self.registry)
        self.sessions_ended = Counter(
            "broker_sessions_ended_total", "Sessions and refresh families ended, by cause", ["cause"],
            registry=self.registry)
        self.accounts_deleted = Counter("broker_accounts_deleted_total", "Accounts deleted", registry=self.registry)
        self.tiktok_webhooks = Counter(
            "broker_tiktok_webhooks_total", "TikTok webhook deliveries, by outcome", ["outcome"],
            registry=self.registry)

        self.events = Gauge("broker_events", "Downstream event deliveries, by state", ["state"], registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
