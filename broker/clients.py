"""The registry of OAuth clients from BROKER_CLIENTS_FILE (YAML or JSON), and how a client proves who it is."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from broker.client_entries import ACCOUNT_SCOPE, DEFAULT_GRANT_TYPES, parse_entry
from broker.errors import ConfigError, InvalidClient

# Compared against when the client is unknown, so that timing does not tell which client ids exist.
_DUMMY_DIGEST = hashlib.sha256(b"no such client").hexdigest()
# RFC 8252 section 7.3 names the loopback IP literals; `localhost` is matched exactly only (section 8.3: a name
# may resolve elsewhere).
LOOPBACK_IPS = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class Client:
    client_id: str
    secret_sha256: str | None
    redirect_uris: tuple[str, ...]
    scopes: tuple[str, ...]
    audience: str | None  # as registered; `token_audience` is what its access tokens carry
    auth_method: str
    client_name: str = ""
    first_party: bool = False  # the company's own app: no consent page, may hold the `account` scope
    grant_types: tuple[str, ...] = DEFAULT_GRANT_TYPES
    post_logout_redirect_uris: tuple[str, ...] = ()
    backchannel_logout_uri: str | None = None
    allowed_cors_origins: tuple[str, ...] = ()
    id_token_alg: str = "RS256"  # noqa: S105 (an algorithm name, not a password)
    require_par: bool = False
    tiktok_redirect_uris: tuple[str, ...] = ()  # a native app's SDK redirect URIs, as registered at TikTok
    dpop_bound: bool = False  # dpop_bound_access_tokens: every token request must carry a DPoP proof

    @property
    def confidential(self) -> bool:
        return self.secret_sha256 is not None

    def accepts_redirect_uri(self, uri: str) -> bool:
        """Exact match; for a native app (a public client) a loopback IP redirect URI matches with any port, as
        RFC 8252 section 7.3 requires: a desktop or command-line app listens on whatever port the system gives it."""
        if uri in self.redirect_uris:
            return True
        if self.confidential:
            return False
        requested = _loopback_without_port(uri)
        return requested is not None and any(_loopback_without_port(registered) == requested
                                             for registered in self.redirect_uris)

    @property
    def token_audience(self) -> str:
        """The `aud` of this client's access tokens: its registered audience, else its own id (never the
        broker's, so that no service mistakes an app's token for one meant for it)."""
        return self.audience or self.client_id

    @property
    def name(self) -> str:
        return self.client_name or self.client_id

    def may_use(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


def _loopback_without_port(uri: str) -> str | None:
    """An http loopback IP URI with its port left out (`http://127.0.0.1/cb`), None for any other URI."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 (refuses a port that is not a number)
    except ValueError:
        return None
    if parts.scheme != "http" or parts.hostname not in LOOPBACK_IPS or "@" in parts.netloc or parts.fragment:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"http://{host}{parts.path}" + (f"?{parts.query}" if parts.query else "")


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_client_secret() -> str:
    return secrets.token_urlsafe(32)


class ClientRegistry:
    def __init__(self, clients: tuple[Client, ...] = ()) -> None:
        self._clients = {client.client_id: client for client in clients}

    def __len__(self) -> int:
        return len(self._clients)

    def __iter__(self) -> Iterator[Client]:
        return iter(self._clients.values())

    def audiences(self) -> tuple[str, ...]:
        """Every audience a client's access tokens carry."""
        return tuple(sorted({client.token_audience for client in self._clients.values()}))

    def cors_origins(self) -> frozenset[str]:
        """Every origin some client lets browsers call the token endpoints from."""
        return frozenset(origin for client in self._clients.values() for origin in client.allowed_cors_origins)

    def get(self, client_id: str) -> Client | None:
        return self._clients.get(client_id)

    def authenticate(self, client_id: str, secret: str | None) -> Client:
        """The client, if the secret matches (confidential) or none is needed (public); else InvalidClient."""
        client = self._clients.get(client_id)
        expected = client.secret_sha256 if client and client.secret_sha256 else _DUMMY_DIGEST
        presented = secret_digest(secret) if secret is not None else ""
        matches = hmac.compare_digest(expected, presented)
        if client is None:
            raise InvalidClient(log_detail="unknown client_id")
        if client.confidential:
            if secret is None or not matches:
                raise InvalidClient(log_detail=f"bad secret for client {client_id!r}")
        elif secret is not None:
            raise InvalidClient(log_detail=f"public client {client_id!r} sent a secret")
        return client


def load_clients(path: Path | None, *, gateway_audience: str | None = None) -> ClientRegistry:
    """Parse the clients file; ConfigError naming the variable, the file and each bad field.

    `gateway_audience`: the audience /auth/verify accepts; only a first-party client may receive tokens for it."""
    if path is None:
        return ClientRegistry()
    prefix = f"BROKER_CLIENTS_FILE: {path}"
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError([f"{prefix}: cannot be read ({exc.strerror})"]) from None
    try:
        document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError([f"{prefix}: not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({exc})"]) from None
    if not isinstance(document, dict) or not isinstance(document.get("clients"), list):
        raise ConfigError([f"{prefix}: must be a mapping with a 'clients' list"])
    problems: list[str] = []
    clients: list[Client] = []
    for index, raw in enumerate(document["clients"]):
        fields = parse_entry(index, raw, problems)
        if fields is None:
            continue
        client = Client(**fields)
        if any(existing.client_id == client.client_id for existing in clients):
            problems.append(f"clients[{index}].client_id: {client.client_id!r} appears twice")
        if gateway_audience and client.token_audience == gateway_audience and not client.first_party:
            problems.append(f"clients[{index}] ({client.client_id}).audience: {gateway_audience} is the gateway "
                            "audience (BROKER_GATEWAY_AUDIENCE), which /auth/verify accepts: only a first_party "
                            "client may receive tokens for it")
        clients.append(client)
    # An audience naming another client would make that client's own service (which checks aud == its id, the
    # default) and its introspection accept this client's tokens: one app acting as another.
    ids = {client.client_id for client in clients}
    for index, client in enumerate(clients):
        if client.audience and client.audience != client.client_id and client.audience in ids:
            problems.append(f"clients[{index}] ({client.client_id}).audience: {client.audience!r} is another "
                            "client's client_id, the audience of that client's own tokens")
    if problems:
        raise ConfigError([f"{prefix}: {problem}" for problem in problems])
    return ClientRegistry(tuple(clients))


__all__ = ["ACCOUNT_SCOPE", "Client", "ClientRegistry", "load_clients", "new_client_secret", "secret_digest"]
