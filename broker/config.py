"""Settings: read once from BROKER_* variables into a frozen object; every problem reported with its name."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from broker.errors import ConfigError

PREFIX = "BROKER_"
TIKTOK_AUTHORIZE_URL = "https://www.tiktok.com/v2/auth/authorize/"
TIKTOK_API_URL = "https://open.tiktokapis.com"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
SIGNING_ALGORITHMS = ("ES256", "EdDSA", "RS256")
PERIOD_UNITS = {"s": 1, "m": 60, "h": 3600}
# The TikTok API paths whose scopes the broker knows (the Display API's field table, the Content Posting API): the
# proxy forwards them by default; any other path must declare its scopes.
KNOWN_PROXY_PATHS = ("/v2/user/info/", "/v2/video/list/", "/v2/video/query/", "/v2/post/publish/creator_info/query/",
                     "/v2/post/publish/video/init/", "/v2/post/publish/inbox/video/init/",
                     "/v2/post/publish/content/init/", "/v2/post/publish/status/fetch/")
# A TikTok API path as the proxy forwards it, character for character: no segment that an HTTP client would fold
# ("." or ".."), nothing to percent-decode, no blank.
API_PATH = re.compile(r"^(?:/[A-Za-z0-9_-][A-Za-z0-9._-]*)+/?$")
# TikTok's scope names: user.info.basic, video.publish, research.data.basic.
TIKTOK_SCOPE_NAME = re.compile(r"^[a-z0-9]+(?:[._][a-z0-9]+)*$")
RATE_LIMIT = re.compile(r"^(\d+)/(\d+)([smh]?)(?:\s+burst=(\d+))?$")

T = TypeVar("T")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Secret:
    """A string that never shows itself in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class VaultKey:
    kid: str
    key: bytes = field(repr=False)


@dataclass(frozen=True)
class RateLimit:
    """`requests` per `period` seconds on average, at most `burst` of them at once."""

    requests: int
    period: int
    burst: int

    def __str__(self) -> str:
        return f"{self.requests}/{self.period}s burst={self.burst}"


@dataclass(frozen=True)
class Settings:
    issuer: str = "http://127.0.0.1:8080"
    redis_url: Secret = field(default_factory=lambda: Secret(""))
    redis_prefix: str = "broker:"
    data_dir: Path = Path("data")
    keys_dir: Path = Path("keys")
    vault_keys: tuple[VaultKey, ...] = ()
    tiktok_client_key: str = ""
    tiktok_client_secret: Secret = field(default_factory=lambda: Secret(""))
    tiktok_scopes: tuple[str, ...] = ("user.info.basic",)
    tiktok_authorize_url: str = TIKTOK_AUTHORIZE_URL
    tiktok_api_url: str = TIKTOK_API_URL
    tiktok_timeout: float = 10.0
    allowed_return_urls: tuple[str, ...] = ()
    audience: str = ""  # BROKER_AUDIENCE, the older name of the gateway audience
    gateway_audience: str = ""
    access_token_ttl: int = 300
    session_ttl: int = 7 * 24 * 3600
    session_idle_ttl: int = 12 * 3600
    login_ttl: int = 600
    jwt_leeway: int = 10
    jwks_max_age: int = 300
    signing_alg: str = "ES256"
    key_rotation_period: int = 0  # 0: keys rotate only by `broker keys new`
    refresh_grace: int = 10
    # Live refresh families per browser session and per user; a new one ends the oldest over either cap.
    max_families_per_session: int = 32
    max_families_per_user: int = 128
    tiktok_refresh_margin: int = 300
    tiktok_refresh_ahead: bool = False
    tiktok_proxy_paths: tuple[str, ...] = KNOWN_PROXY_PATHS
    tiktok_proxy_user_rate: int = 600  # requests per minute per user and path, all callers together
    tiktok_proxy_client_rate: int = 300  # requests per minute per user, path and calling client
    tiktok_publish_ttl: int = 30 * 86400  # how long the broker remembers who made a post (status, events)
    clients_file: Path | None = None
    webhook_urls: tuple[str, ...] = ()
    # Sessions and clean access tokens each process keeps in memory, dropped on Redis invalidations; 0: off.
    local_cache_size: int = 10_000
    # The longest a write to Redis may go unseen by that cache: an entry is served only while the invalidation
    # connection has answered a PING sent at most this long ago; else the read goes to Redis.
    local_cache_trust_ms: int = 500
    # Peers whose X-Forwarded-* headers are believed (load balancers, gateways); empty: nobody's.
    trusted_proxies: tuple[IPNetwork, ...] = ()
    rate_limits: bool = True
    # When set, GET /metrics needs `Authorization: Bearer <this>`; unset, it is open (local development).
    metrics_token: Secret = field(default_factory=lambda: Secret(""))
    # Per client address (IPv6: per /64) and endpoint. A person never comes near these; a whole office behind
    # one NAT address rarely does. Every limited endpoint has its own bucket.
    rate_limit_login: RateLimit = RateLimit(300, 300, 60)  # /login, /authorize, /callback
    rate_limit_oauth: RateLimit = RateLimit(1200, 60, 300)  # /oauth/token, /oauth/revoke, /oauth/introspect
    rate_limit_webhook: RateLimit = RateLimit(600, 60, 300)  # /webhooks/tiktok
    # Per registered OAuth client (authenticated or merely named) and endpoint, over all its addresses.
    rate_limit_client: RateLimit = RateLimit(6000, 60, 1000)
    # User codes typed on /device, per client address and per signed-in user: a code has only 34 bits.
    rate_limit_device: RateLimit = RateLimit(30, 300, 10)
    # DPoP (RFC 9449): every proof must carry the broker's current nonce (handed out in DPoP-Nonce).
    dpop_require_nonce: bool = False
    dev_mode: bool = False

    @property
    def redirect_uri(self) -> str:
        """The callback TikTok sends users back to; register exactly this value at TikTok."""
        return self.issuer + "/callback"

    @property
    def token_audience(self) -> str:
        """The gateway audience: the `aud` of session JWTs, the only one /auth/verify accepts from a bearer."""
        return self.gateway_audience or self.audience or self.issuer

    @property
    def key_algorithms(self) -> tuple[str, ...]:
        """Every algorithm the broker signs with: its own (access tokens, events) and both ID-token algorithms
        (RS256, OpenID's default, and ES256 for clients that register it); each needs an active key."""
        return tuple(dict.fromkeys((self.signing_alg, "RS256", "ES256")))

    @property
    def secure_cookies(self) -> bool:
        return self.issuer.startswith("https://")

    @property
    def max_token_lifetime(self) -> int:
        """The longest a broker-signed token is accepted (its lifetime plus the leeway verifiers allow).

        A retired signing key stays published this long (plus one JWKS max-age) after it stops signing.
        """
        return self.access_token_ttl + self.jwt_leeway

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


class _Reader:
    """Parses variables one by one, collecting every problem instead of stopping at the first."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self.environ.get(PREFIX + name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def get(self, name: str, default: T, parse: Callable[[str], T]) -> T:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return parse(value)
        except ValueError as exc:
            self.problems.append(f"{PREFIX}{name}: {exc}")
            return default


def _list(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _whole(unit: str, low: int, high: int) -> Callable[[str], int]:
    """A parser of whole numbers of `unit` between `low` and `high`, naming the unit in its problems."""
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"must be a whole number of {unit}, got {value!r}") from None
        if not low <= number <= high:
            raise ValueError(f"must be between {low} and {high} {unit}, got {number}")
        return number

    return parse


def _seconds(low: int, high: int) -> Callable[[str], int]:
    return _whole("seconds", low, high)


def _boolean(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be true or false, got {value!r}")


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"must be a number, got {value!r}") from None
    if number <= 0:
        raise ValueError("must be greater than zero")
    return number


def _base_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an absolute http(s) URL, got {value!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must not contain a query, a fragment or credentials")
    return value.rstrip("/")


def _absolute_url(value: str) -> str:
    _base_url(value)
    return value


def _url_list(value: str) -> tuple[str, ...]:
    return tuple(_absolute_url(item) for item in _list(value))


def proxy_path_entry(entry: str) -> tuple[str, tuple[str, ...] | None]:
    """One BROKER_TIKTOK_PROXY_PATHS entry, `PATH` or `PATH=SCOPE+SCOPE` (`PATH=`: declared to need none): the path
    and the TikTok scopes declared for it, None when the entry declares nothing."""
    path, declares, names = entry.partition("=")
    if not API_PATH.fullmatch(path):
        raise ValueError(f"each entry must be an absolute path like /v2/user/info/ (letters, digits, '_', '-' and "
                         f"'.' within a segment, no '.' or '..' segment), got {path!r}")
    if not declares:
        return path, None
    scopes = tuple(names.split("+")) if names else ()
    for scope in scopes:
        if not TIKTOK_SCOPE_NAME.fullmatch(scope):
            raise ValueError(f"{scope!r} (in {entry!r}) is not a TikTok scope name like video.list")
    return path, scopes


def proxy_paths(entries: tuple[str, ...]) -> dict[str, tuple[str, ...] | None]:
    """Each path of BROKER_TIKTOK_PROXY_PATHS with the scopes it declares (None: the broker's own tables decide);
    ValueError for an entry that is not well formed, a path named twice, or a path the broker has no tables for
    that declares nothing."""
    declared: dict[str, tuple[str, ...] | None] = {}
    for entry in entries:
        path, scopes = proxy_path_entry(entry)
        if path in declared:
            raise ValueError(f"{path} appears more than once")
        if scopes is None and path not in KNOWN_PROXY_PATHS:
            raise ValueError(f"the broker does not know which TikTok scopes {path} needs: write {path}=SCOPE "
                             f"(join several with +; {path}= if it needs none), so that only tokens carrying them "
                             "may call it")
        declared[path] = scopes
    return declared


def _api_paths(value: str) -> tuple[str, ...]:
    entries = _list(value)
    proxy_paths(entries)
    return entries


_rate = _whole("requests per minute", 1, 1_000_000)
_cache_size = _whole("entries (0: off)", 0, 10_000_000)


def _metrics_token(value: str) -> Secret:
    if len(value) < 16 or any(ch.isspace() for ch in value):
        raise ValueError("must be at least 16 characters without spaces (for example `openssl rand -hex 32`)")
    return Secret(value)


def _networks(value: str) -> tuple[IPNetwork, ...]:
    networks: list[IPNetwork] = []
    for entry in _list(value):
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"each entry must be an IP address or a CIDR range like 10.0.0.0/8, got {entry!r}") \
                from None
    return tuple(networks)


def parse_rate_limit(value: str) -> RateLimit:
    """`300/5m` (300 requests per 5 minutes, all of them at once if need be) or `300/5m burst=60`."""
    match = RATE_LIMIT.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"must look like 300/5m or 300/5m burst=60 (requests per period in s, m or h), "
                         f"got {value!r}")
    requests, period = int(match[1]), int(match[2]) * PERIOD_UNITS[match[3] or "s"]
    burst = int(match[4]) if match[4] else requests
    if not 1 <= requests <= 1_000_000 or not 1 <= burst <= 1_000_000:
        raise ValueError(f"requests and burst must be between 1 and 1000000, got {value!r}")
    if not 1 <= period <= 86400:
        raise ValueError(f"the period must be between 1 second and 24 hours, got {value!r}")
    if period * 1000 < requests:
        raise ValueError(f"at most 1000 requests per second, got {value!r}")
    return RateLimit(requests, period, burst)


def parse_vault_keys(value: str) -> tuple[VaultKey, ...]:
    """`kid:key,kid:key`: key is 32 random bytes in unpadded base64url; the first entry encrypts."""
    keys: list[VaultKey] = []
    for entry in _list(value):
        kid, sep, encoded = entry.partition(":")
        if not sep or not kid or not encoded:
            raise ValueError("each entry must look like kid:base64url-key (see `broker vault new-key`)")
        try:
            key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError):
            raise ValueError(f"key {kid!r} is not valid base64url") from None
        if len(key) != 32:
            raise ValueError(f"key {kid!r} must decode to 32 bytes, got {len(key)}")
        if any(existing.kid == kid for existing in keys):
            raise ValueError(f"key id {kid!r} appears twice")
        keys.append(VaultKey(kid, key))
    return tuple(keys)


def _signing_alg(value: str) -> str:
    if value not in SIGNING_ALGORITHMS:
        raise ValueError(f"must be one of {', '.join(SIGNING_ALGORITHMS)}, got {value!r}")
    return value


def _prefix(value: str) -> str:
    if any(ch in value for ch in "{} \t\r\n"):
        raise ValueError("must not contain braces or whitespace (braces are reserved for hash tags)")
    return value


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read every BROKER_* variable once; raise ConfigError naming each bad one."""
    env = os.environ if environ is None else environ
    r = _Reader(env)
    defaults = Settings()
    clients_file = r.raw("CLIENTS_FILE")
    settings = Settings(
        issuer=r.get("ISSUER", defaults.issuer, _base_url),
        redis_url=Secret(r.raw("REDIS_URL") or ""),
        redis_prefix=r.get("REDIS_PREFIX", defaults.redis_prefix, _prefix),
        data_dir=Path(r.raw("DATA_DIR") or defaults.data_dir),
        keys_dir=Path(r.raw("KEYS_DIR") or defaults.keys_dir),
        vault_keys=r.get("VAULT_KEYS", (), parse_vault_keys),
        tiktok_client_key=r.raw("TIKTOK_CLIENT_KEY") or "",
        tiktok_client_secret=Secret(r.raw("TIKTOK_CLIENT_SECRET") or ""),
        tiktok_scopes=r.get("TIKTOK_SCOPES", defaults.tiktok_scopes, _list),
        tiktok_authorize_url=r.get("TIKTOK_AUTHORIZE_URL", defaults.tiktok_authorize_url, _absolute_url),
        tiktok_api_url=r.get("TIKTOK_API_URL", defaults.tiktok_api_url, _base_url),
        tiktok_timeout=r.get("TIKTOK_TIMEOUT", defaults.tiktok_timeout, _positive_float),
        allowed_return_urls=r.get("ALLOWED_RETURN_URLS", (), _url_list),
        audience=r.raw("AUDIENCE") or "",
        gateway_audience=r.raw("GATEWAY_AUDIENCE") or "",
        access_token_ttl=r.get("ACCESS_TOKEN_TTL", defaults.access_token_ttl, _seconds(60, 900)),
        session_ttl=r.get("SESSION_TTL", defaults.session_ttl, _seconds(300, 180 * 86400)),
        session_idle_ttl=r.get("SESSION_IDLE_TTL", defaults.session_idle_ttl, _seconds(60, 180 * 86400)),
        jwt_leeway=r.get("JWT_LEEWAY", defaults.jwt_leeway, _seconds(0, 120)),
        jwks_max_age=r.get("JWKS_MAX_AGE", defaults.jwks_max_age, _seconds(0, 86400)),
        signing_alg=r.get("SIGNING_ALG", defaults.signing_alg, _signing_alg),
        key_rotation_period=r.get("KEY_ROTATION_PERIOD", 0, _seconds(0, 366 * 86400)),
        refresh_grace=r.get("REFRESH_GRACE", defaults.refresh_grace, _seconds(0, 60)),
        max_families_per_session=r.get("MAX_FAMILIES_PER_SESSION", defaults.max_families_per_session,
                                       _whole("families", 1, 1000)),
        max_families_per_user=r.get("MAX_FAMILIES_PER_USER", defaults.max_families_per_user,
                                    _whole("families", 1, 1000)),
        tiktok_refresh_margin=r.get("TIKTOK_REFRESH_MARGIN", defaults.tiktok_refresh_margin, _seconds(0, 3600)),
        tiktok_refresh_ahead=r.get("TIKTOK_REFRESH_AHEAD", False, _boolean),
        tiktok_proxy_paths=r.get("TIKTOK_PROXY_PATHS", defaults.tiktok_proxy_paths, _api_paths),
        tiktok_proxy_user_rate=r.get("TIKTOK_PROXY_USER_RATE", defaults.tiktok_proxy_user_rate, _rate),
        tiktok_proxy_client_rate=r.get("TIKTOK_PROXY_CLIENT_RATE", defaults.tiktok_proxy_client_rate, _rate),
        tiktok_publish_ttl=r.get("TIKTOK_PUBLISH_TTL", defaults.tiktok_publish_ttl, _seconds(3600, 366 * 86400)),
        clients_file=Path(clients_file) if clients_file else None,
        webhook_urls=r.get("WEBHOOK_URLS", (), _url_list),
        local_cache_size=r.get("LOCAL_CACHE_SIZE", defaults.local_cache_size, _cache_size),
        local_cache_trust_ms=r.get("LOCAL_CACHE_TRUST_MS", defaults.local_cache_trust_ms,
                                   _whole("milliseconds", 50, 5000)),
        trusted_proxies=r.get("TRUSTED_PROXIES", (), _networks),
        rate_limits=r.get("RATE_LIMITS", True, _boolean),
        metrics_token=r.get("METRICS_TOKEN", Secret(""), _metrics_token),
        rate_limit_login=r.get("RATE_LIMIT_LOGIN", defaults.rate_limit_login, parse_rate_limit),
        rate_limit_oauth=r.get("RATE_LIMIT_OAUTH", defaults.rate_limit_oauth, parse_rate_limit),
        rate_limit_webhook=r.get("RATE_LIMIT_WEBHOOK", defaults.rate_limit_webhook, parse_rate_limit),
        rate_limit_client=r.get("RATE_LIMIT_CLIENT", defaults.rate_limit_client, parse_rate_limit),
        rate_limit_device=r.get("RATE_LIMIT_DEVICE", defaults.rate_limit_device, parse_rate_limit),
        dpop_require_nonce=r.get("DPOP_REQUIRE_NONCE", False, _boolean),
    )
    if "user.info.basic" not in settings.tiktok_scopes:
        r.problems.append("BROKER_TIKTOK_SCOPES: must include user.info.basic (TikTok needs it for sign-in)")
    if 0 < settings.key_rotation_period < 2 * (settings.jwks_max_age + settings.max_token_lifetime):
        r.problems.append("BROKER_KEY_ROTATION_PERIOD: must be 0 (off) or at least twice "
                          "BROKER_JWKS_MAX_AGE + BROKER_ACCESS_TOKEN_TTL + BROKER_JWT_LEEWAY, so that each key "
                          "is published before it signs and retired keys can be pruned")
    if settings.max_families_per_session > settings.max_families_per_user:
        r.problems.append("BROKER_MAX_FAMILIES_PER_SESSION: must not exceed BROKER_MAX_FAMILIES_PER_USER")
    if settings.session_idle_ttl > settings.session_ttl:
        r.problems.append("BROKER_SESSION_IDLE_TTL: must not exceed BROKER_SESSION_TTL")
    if r.problems:
        raise ConfigError(r.problems)
    return settings


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def production_problems(settings: Settings) -> list[str]:
    """What `broker serve` refuses: settings that are only safe on a developer's machine."""
    problems: list[str] = []
    if settings.issuer.startswith("http://") and not is_loopback_url(settings.issuer):
        problems.append("BROKER_ISSUER: must use https (http is accepted only for loopback hosts)")
    if not settings.vault_keys:
        problems.append("BROKER_VAULT_KEYS: required; create one with `broker vault new-key`")
    if not settings.tiktok_client_key:
        problems.append("BROKER_TIKTOK_CLIENT_KEY: required (the Client key of your TikTok app)")
    if not settings.tiktok_client_secret:
        problems.append("BROKER_TIKTOK_CLIENT_SECRET: required (the Client secret of your TikTok app)")
    for name, url in (("TIKTOK_AUTHORIZE_URL", settings.tiktok_authorize_url),
                      ("TIKTOK_API_URL", settings.tiktok_api_url)):
        if url.startswith("http://") and not is_loopback_url(url):
            problems.append(f"BROKER_{name}: must use https")
    return problems
