"""BROKER_REDIS_URL: every supported form parsed into a RedisTarget, every problem reported at once."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from broker.errors import ConfigError

STANDALONE_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")

TLS_FILE_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
TLS_OPTIONS = (*TLS_FILE_OPTIONS, "ssl_cert_reqs", "ssl_check_hostname")
# Sentinels often have their own password (or none); by default they get the same credentials as the data nodes.
SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")
CERT_REQS = ("required", "optional", "none")
BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}

PROBLEM = "BROKER_REDIS_URL: "


@dataclass(frozen=True)
class RedisTarget:
    """A parsed BROKER_REDIS_URL; no password appears in its repr."""

    kind: str  # standalone | sentinel | cluster
    hosts: tuple[tuple[str, int], ...] = ()  # standalone: one host; empty for a Unix socket
    socket_path: str = ""
    service_name: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    tls_options: dict[str, str | bool] = field(default_factory=dict)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)


def parse_redis_url(url: str) -> RedisTarget:
    """Understand every supported form; raise ConfigError naming BROKER_REDIS_URL and listing every problem.

    redis://[user:pass@]host:port[/db], rediss://... (TLS), unix://[user:pass@]/path/to.sock[?db=N],
    redis+sentinel://[user:pass@]host:port[,host:port...]/service-name[/db] (rediss+sentinel for TLS),
    redis+cluster://[user:pass@]host:port[,host:port...] (rediss+cluster for TLS).
    Query options: ssl_ca_certs, ssl_certfile, ssl_keyfile (file paths), ssl_cert_reqs (required|optional|none),
    ssl_check_hostname (true|false) with TLS; sentinel_username and sentinel_password for Sentinel; db for unix.
    """
    problems: list[str] = []
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    kinds = {**dict.fromkeys(STANDALONE_SCHEMES, "standalone"), **dict.fromkeys(SENTINEL_SCHEMES, "sentinel"),
             **dict.fromkeys(CLUSTER_SCHEMES, "cluster")}
    if scheme not in kinds:
        raise ConfigError([PROBLEM + f"unsupported scheme {scheme!r} (use redis, rediss, unix, redis+sentinel, "
                           "rediss+sentinel, redis+cluster or rediss+cluster)"])
    kind, tls = kinds[scheme], scheme.startswith("rediss")
    options = {key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
    allowed = (*(TLS_OPTIONS if tls else ()), *(SENTINEL_OPTIONS if kind == "sentinel" else ()),
               *(("db",) if scheme == "unix" else ()))
    for name in sorted(set(options) - set(allowed)):
        hint = " (TLS options need a rediss scheme)" if name in TLS_OPTIONS else ""
        problems.append(PROBLEM + f"unknown option {name!r}{hint}; {scheme}:// accepts {', '.join(allowed) or 'none'}")
    tls_options = _tls_options(options, problems) if tls else {}
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    netloc = parts.netloc.rpartition("@")[2]
    segments = [segment for segment in parts.path.split("/") if segment]
    base = RedisTarget(kind, username=username, password=password, tls=tls, tls_options=tls_options)
    if scheme == "unix":
        if not parts.path:
            problems.append(PROBLEM + "a Unix socket URL needs a path: unix:///run/redis/redis.sock")
        target = replace(base, socket_path=unquote(parts.path), db=_db(options.get("db", "0"), problems))
    elif kind == "standalone":
        hosts: tuple[tuple[str, int], ...] = ()
        if not parts.hostname:
            problems.append(PROBLEM + "needs a host, e.g. redis://127.0.0.1:6379/0")
        elif "," in netloc:
            problems.append(PROBLEM + "several hosts need redis+sentinel:// or redis+cluster://")
        else:  # the port may be left out: 6379
            hosts = _hosts(netloc if ":" in netloc.rpartition("]")[2] else f"{netloc}:6379", problems)
        target = replace(base, hosts=hosts, db=_db(segments[0] if segments else "0", problems))
    elif kind == "sentinel":
        if not segments:
            problems.append(PROBLEM + "a Sentinel URL must name the service: redis+sentinel://h:26379/mymaster")
        target = replace(base, hosts=_hosts(netloc, problems), service_name=segments[0] if segments else "",
                         db=_db(segments[1] if len(segments) > 1 else "0", problems),
                         sentinel_username=options.get("sentinel_username", username) or None,
                         sentinel_password=options.get("sentinel_password", password) or None)
    else:
        if segments:
            problems.append(PROBLEM + "a Cluster URL has no database or path (Redis Cluster only has db 0)")
        target = replace(base, hosts=_hosts(netloc, problems))
    if problems:
        raise ConfigError(problems)
    return target


def _hosts(netloc: str, problems: list[str]) -> tuple[tuple[str, int], ...]:
    hosts: list[tuple[str, int]] = []
    for item in netloc.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            problems.append(PROBLEM + f"each host needs host:port, got {item!r}")
            continue
        hosts.append((host.strip("[]"), int(port)))
    return tuple(hosts)


def _db(value: str, problems: list[str]) -> int:
    if not value.isdigit():
        problems.append(PROBLEM + f"database must be a number, got {value!r}")
        return 0
    return int(value)


def _tls_options(options: dict[str, str], problems: list[str]) -> dict[str, str | bool]:
    found: dict[str, str | bool] = {}
    for name in TLS_FILE_OPTIONS:
        if name in options:
            if not Path(options[name]).is_file():
                problems.append(PROBLEM + f"{name}: no such file {options[name]!r}")
            found[name] = options[name]
    if ("ssl_certfile" in options) != ("ssl_keyfile" in options):
        problems.append(PROBLEM + "a client certificate needs both ssl_certfile and ssl_keyfile")
    if "ssl_cert_reqs" in options:
        if options["ssl_cert_reqs"] not in CERT_REQS:
            problems.append(PROBLEM + f"ssl_cert_reqs must be one of {', '.join(CERT_REQS)}")
        found["ssl_cert_reqs"] = options["ssl_cert_reqs"]
    if "ssl_check_hostname" in options:
        if options["ssl_check_hostname"].lower() not in BOOLEANS:
            problems.append(PROBLEM + "ssl_check_hostname must be true or false")
        found["ssl_check_hostname"] = BOOLEANS.get(options["ssl_check_hostname"].lower(), True)
    return found
