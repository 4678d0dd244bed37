"""The registry of OAuth clients from BROKER_CLIENTS_FILE (YAML or JSON), and how a client proves who it is."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from broker.errors import ConfigError, InvalidClient

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
CLIENT_ID = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# Compared against when the client is unknown, so that timing does not tell which client ids exist.
_DUMMY_DIGEST = hashlib.sha256(b"no such client").hexdigest()


@dataclass(frozen=True)
class Client:
    client_id: str
    secret_sha256: str | None
    redirect_uris: tuple[str, ...]
    scopes: tuple[str, ...]
    audience: str | None
    auth_method: str

    @property
    def confidential(self) -> bool:
        return self.secret_sha256 is not None


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_client_secret() -> str:
    return secrets.token_urlsafe(32)


class ClientRegistry:
    def __init__(self, clients: tuple[Client, ...] = ()) -> None:
        self._clients = {client.client_id: client for client in clients}

    def __len__(self) -> int:
        return len(self._clients)

    def audiences(self) -> tuple[str, ...]:
        return tuple(sorted({client.audience for client in self._clients.values() if client.audience}))

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


def _redirect_uri_problem(uri: object) -> str | None:
    if not isinstance(uri, str) or not uri:
        return "must be a non-empty string"
    parts = urlsplit(uri)
    if not parts.scheme or parts.fragment:
        return "must be absolute and have no fragment"
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return "http is allowed only for loopback hosts"
    if parts.scheme == "https" and not parts.hostname:
        return "needs a host"
    return None


def _parse_client(index: int, raw: Any, problems: list[str]) -> Client | None:
    where = f"clients[{index}]"
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a mapping")
        return None
    client_id = raw.get("client_id")
    if not isinstance(client_id, str) or not CLIENT_ID.fullmatch(client_id):
        problems.append(f"{where}.client_id: must be 1-128 characters of [A-Za-z0-9._~-]")
        return None
    where = f"clients[{index}] ({client_id})"
    digest = raw.get("client_secret_sha256")
    if digest is not None and (not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest)):
        problems.append(f"{where}.client_secret_sha256: must be a lowercase hex SHA-256 digest")
    method = raw.get("token_endpoint_auth_method", "client_secret_basic" if digest else "none")
    if method not in AUTH_METHODS:
        problems.append(f"{where}.token_endpoint_auth_method: must be one of {', '.join(AUTH_METHODS)}")
    elif (method == "none") != (digest is None):
        problems.append(f"{where}: a client has a secret digest exactly when its auth method is not 'none'")
    uris = raw.get("redirect_uris", [])
    if not isinstance(uris, list):
        problems.append(f"{where}.redirect_uris: must be a list")
        uris = []
    for position, uri in enumerate(uris):
        problem = _redirect_uri_problem(uri)
        if problem:
            problems.append(f"{where}.redirect_uris[{position}]: {problem}")
    scopes = raw.get("scopes", ["openid"])
    if not isinstance(scopes, list) or not all(isinstance(s, str) and s for s in scopes):
        problems.append(f"{where}.scopes: must be a list of scope names")
        scopes = []
    audience = raw.get("audience")
    if audience is not None and (not isinstance(audience, str) or not audience):
        problems.append(f"{where}.audience: must be a non-empty string")
    unknown = set(raw) - {"client_id", "client_secret_sha256", "token_endpoint_auth_method", "redirect_uris",
                          "scopes", "audience"}
    if unknown:
        problems.append(f"{where}: unknown field(s) {', '.join(sorted(unknown))} (a plain client_secret is "
                        "never accepted: store its SHA-256 in client_secret_sha256)")
    return Client(client_id, digest if isinstance(digest, str) else None, tuple(str(u) for u in uris),
                  tuple(scopes), audience if isinstance(audience, str) else None, str(method))


def load_clients(path: Path | None) -> ClientRegistry:
    """Parse the clients file; ConfigError naming the variable, the file and each bad entry."""
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
        client = _parse_client(index, raw, problems)
        if client is None:
            continue
        if any(existing.client_id == client.client_id for existing in clients):
            problems.append(f"clients[{index}].client_id: {client.client_id!r} appears twice")
        clients.append(client)
    if problems:
        raise ConfigError([f"{prefix}: {problem}" for problem in problems])
    return ClientRegistry(tuple(clients))
