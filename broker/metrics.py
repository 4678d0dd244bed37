"""Prometheus metrics: every metric the broker exports, in one registry per application instance.

One registry per app, so that tests and several apps in one process never collide. Every label takes a bounded
set of values (route templates, a fixed set of methods, short fixed words), so a caller cannot grow the series
count. This module imports nothing else of the broker: the composition root builds one `Metrics` and hands it
to the web layer, the flows and the provider.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

# An auth check answers in about a millisecond; a slow Redis or a queue of requests shows up in the upper buckets.
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# TikTok answers in tens to hundreds of milliseconds; the top buckets catch calls near the configured timeout.
TIKTOK_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Anything else a client sends as a method is counted as "other", so made-up methods add no series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"

__all__ = ["KNOWN_METHODS", "REQUEST_BUCKETS", "TIKTOK_BUCKETS", "ClusterSnapshot", "Metrics"]


@dataclass(frozen=True)
class ClusterSnapshot:
    """Figures that live in Redis and are shared by every replica, read at scrape time."""

    webhook_backlog: int  # deliveries waiting for their next attempt or in flight
    webhooks_delivered: int
    webhooks_given_up: int
    events_emitted: int
    tiktok_revoke_backlog: int  # TikTok revocations waiting in the durable retry queue


class _ClusterCollector:
    """Exports the last ClusterSnapshot, or nothing when the last read failed: an absent series is honest,
    a stale one would claim a backlog that nobody measured."""

    def __init__(self) -> None:
        self.snapshot: ClusterSnapshot | None = None

    def describe(self) -> Iterable[Metric]:
        return self._families(ClusterSnapshot(0, 0, 0, 0, 0))

    def collect(self) -> Iterable[Metric]:
        return self._families(self.snapshot) if self.snapshot is not None else ()

    @staticmethod
    def _families(snap: ClusterSnapshot) -> Iterator[Metric]:
        yield GaugeMetricFamily("broker_webhook_backlog", "Event webhook deliveries waiting or in flight "
                                "(cluster-wide, the same on every replica)", value=snap.webhook_backlog)
        finished = CounterMetricFamily("broker_webhook_deliveries", "Event webhook deliveries finished, by outcome "
                                       "(cluster-wide, the same on every replica)", labels=["outcome"])
        finished.add_metric(["delivered"], snap.webhooks_delivered)
        finished.add_metric(["given_up"], snap.webhooks_given_up)
        yield finished
        yield CounterMetricFamily("broker_events_emitted", "Events appended to the stream "
                                  "(cluster-wide, the same on every replica)", value=snap.events_emitted)
        yield GaugeMetricFamily("broker_tiktok_revoke_backlog", "TikTok revocations waiting in the durable retry "
                                "queue (cluster-wide, the same on every replica)", value=snap.tiktok_revoke_backlog)


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        # The process's own health (CPU, memory, open files, GC), as the default registry would have it.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)

        self.http_request_duration = Histogram(
            "broker_http_request_duration_seconds", "HTTP requests by route template, method and status "
            "(its _count is the request count)", ["route", "method", "status"], buckets=REQUEST_BUCKETS,
            registry=registry)
        self.logins = Counter(
            "broker_logins_total", "Browser logins finished at /callback, by outcome", ["outcome"], registry=registry)
        self.refresh_grants = Counter(
            "broker_refresh_grants_total", "Refresh-token grants at /oauth/token, by outcome", ["outcome"],
            registry=registry)
        self.denylist_hits = Counter(
            "broker_denylist_hits_total", "Access tokens refused because their jti, session (sid) or user (sub) "
            "was revoked", ["kind"], registry=registry)
        self.tiktok_request_duration = Histogram(
            "broker_tiktok_request_duration_seconds", "Calls to TikTok by endpoint, until TikTok's answer (headers "
            "for proxied calls) or the failure", ["endpoint"], buckets=TIKTOK_BUCKETS, registry=registry)
        self.tiktok_errors = Counter(
            "broker_tiktok_errors_total", "Failed calls to TikTok, by endpoint and kind", ["endpoint", "kind"],
            registry=registry)
        self.redis_errors = Counter(
            "broker_redis_errors_total", "Operations that failed because Redis was unreachable, by operation "
            "(a route template, or a background job)", ["operation"], registry=registry)
        self.rate_limited = Counter(
            "broker_rate_limited_total", "Requests refused by a rate limit, by endpoint and the kind of key "
            "the limit counts", ["endpoint", "key_kind"], registry=registry)
        self.tiktok_revoke_failures = Counter(
            "broker_tiktok_revoke_failures_total", "TikTok revoke calls that failed and were queued for retry",
            registry=registry)
        self.tiktok_revokes = Counter(
            "broker_tiktok_revokes_total", "Grants revoked at TikTok, by outcome", ["outcome"], registry=registry)
        self.sessions_ended = Counter(
            "broker_sessions_ended_total", "Sessions and refresh families ended, by cause", ["cause"],
            registry=registry)
        self.accounts_deleted = Counter("broker_accounts_deleted_total", "Accounts deleted", registry=registry)
        self.tiktok_webhooks = Counter(
            "broker_tiktok_webhooks_total", "TikTok webhook deliveries, by outcome", ["outcome"], registry=registry)
        self._cluster = _ClusterCollector()
        registry.register(self._cluster)
        # Labelled children of the request histogram, so the hot path skips prometheus_client's lock and lookup.
        self._request_series: dict[tuple[str, str, int], Histogram] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One HTTP request. `route` must be a route template (or a fixed word such as "unmatched")."""
        if method not in KNOWN_METHODS:
            method = OTHER_METHOD
        key = (route, method, status)
        series = self._request_series.get(key)
        if series is None:
            series = self._request_series[key] = self.http_request_duration.labels(route, method, str(status))
        series.observe(seconds)

    def observe_tiktok(self, endpoint: str, seconds: float, error: str | None = None) -> None:
        """One call to TikTok; `error` is the kind of failure ("unavailable", "rejected", "error") or None."""
        self.tiktok_request_duration.labels(endpoint).observe(seconds)
        if error is not None:
            self.tiktok_errors.labels(endpoint, error).inc()

    def redis_unavailable(self, operation: str) -> None:
        """Redis could not be reached while doing `operation` (a route template or a background job's name)."""
        self.redis_errors.labels(operation).inc()

    def count_rate_limited(self, endpoint: str, key_kind: str) -> None:
        """A request refused by a rate limit: `endpoint` a route template or fixed name, `key_kind` what the limit
        counts (for example "user", "client", "ip"). Rate limiters call this where they refuse."""
        self.rate_limited.labels(endpoint, key_kind).inc()

    def update_cluster(self, snapshot: ClusterSnapshot | None) -> None:
        """The cluster-wide figures read for this scrape, or None when Redis could not be read."""
        self._cluster.snapshot = snapshot

    def render(self) -> bytes:
        return generate_latest(self.registry)
