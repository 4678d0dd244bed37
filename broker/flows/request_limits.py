"""Rate limits on the endpoints that start logins, spend codes and check credentials: per client address and
endpoint, and per registered OAuth client and endpoint. Over a limit: RateLimited (429, Retry-After)."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass

from broker.clients import ClientRegistry
from broker.clock import Clock
from broker.config import RateLimit, Settings
from broker.errors import RateLimited
from broker.metrics import Metrics
from broker.store.ratelimit import Bucket, SharedLimiter

IPV6_SUBJECT_PREFIX = 64  # one subscriber usually holds a whole /64: counting single addresses would not limit
# The route template of each limited endpoint: the `endpoint` label of the rate-limited counter, as the request
# metrics name the route.
ROUTES = {"login": "/login", "authorize": "/authorize", "callback": "/callback", "token": "/oauth/token",
          "revoke": "/oauth/revoke", "introspect": "/oauth/introspect", "webhook": "/webhooks/tiktok",
          "par": "/oauth/par", "proxy": "/tiktok/{path:path}", "logout": "/logout",
          "device_authorization": "/oauth/device_authorization", "device": "/device"}
# The `key_kind` label: what the refusing bucket counts.
ADDRESS_KIND = "ip"
CLIENT_KIND = "client"
USER_KIND = "user"


@dataclass(frozen=True)
class LimitPolicy:
    enabled: bool
    per_address: Mapping[str, RateLimit]  # endpoint name -> limit per client address
    per_client: RateLimit

    @classmethod
    def from_settings(cls, settings: Settings) -> LimitPolicy:
        login, oauth = settings.rate_limit_login, settings.rate_limit_oauth
        return cls(enabled=settings.rate_limits,
                   per_address={"login": login, "authorize": login, "callback": login, "token": oauth,
                                "revoke": oauth, "introspect": oauth, "par": oauth,
                                "webhook": settings.rate_limit_webhook, "proxy": oauth, "logout": login,
                                "device_authorization": oauth, "device": settings.rate_limit_device},
                   per_client=settings.rate_limit_client)


def address_subject(ip: str) -> str:
    """What one bucket counts: an IPv4 address, or the /64 an IPv6 address belongs to."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_SUBJECT_PREFIX), strict=False))
    return str(address)


def _bucket(name: str, limit: RateLimit) -> Bucket:
    return Bucket(name, limit.requests, float(limit.period), limit.burst)


class RequestLimits:
    def __init__(self, limiter: SharedLimiter, clients: ClientRegistry, policy: LimitPolicy, clock: Clock,
                 metrics: Metrics | None = None) -> None:
        self.limiter = limiter
        self.clients = clients
        self.policy = policy
        self.clock = clock
        self.metrics = metrics or Metrics()

    @property
    def enabled(self) -> bool:
        """False when BROKER_RATE_LIMITS is off: callers may skip what they would compute only for a check."""
        return self.policy.enabled

    async def check(self, endpoint: str, *, ip: str | None, client_id: str | None = None,
                    user_id: str | None = None) -> None:
        """Charge this request to its buckets (one round trip), or raise RateLimited with the wait.

        `ip` None charges the client's bucket only (its address was charged before, when the body that names
        the client had not been read yet). `client_id` is the client the request names, authenticated or not:
        only registered ids get a bucket, so made-up ids cannot fill Redis, while guessing a real client's secret
        is limited across addresses. `user_id`: a signed-in user, charged like an address (guesses made from many
        addresses with one account count together).
        """
        if not self.policy.enabled:
            return
        kinds: list[str] = []
        buckets: list[Bucket] = []
        subject = address_subject(ip) if ip is not None else ""
        if ip is not None:
            kinds.append(ADDRESS_KIND)
            buckets.append(_bucket(f"address:{endpoint}:{subject}", self.policy.per_address[endpoint]))
        if client_id and self.clients.get(client_id) is not None:
            kinds.append(CLIENT_KIND)
            buckets.append(_bucket(f"client:{endpoint}:{client_id}", self.policy.per_client))
        if user_id:
            kinds.append(USER_KIND)
            buckets.append(_bucket(f"user:{endpoint}:{user_id}", self.policy.per_address[endpoint]))
        if not buckets:
            return
        waits = await self.limiter.take_each(tuple(buckets), self.clock.now())
        wait, kind = max(zip(waits, kinds, strict=True))
        if wait > 0:
            # Counted once per refused request, under the bucket that decides how long the caller must wait.
            self.metrics.count_rate_limited(ROUTES[endpoint], kind)
            named = [f"{endpoint} limit for {subject}"] if ip is not None else [f"{endpoint} limit"]
            if CLIENT_KIND in kinds:
                named.append(f"client {client_id}")
            raise RateLimited(retry_after=max(1, math.ceil(wait)), log_detail=" / ".join(named))
