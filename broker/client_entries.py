"""One entry of BROKER_CLIENTS_FILE checked field by field: each refusal says what is wrong and why it matters."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
GRANT_AUTHORIZATION_CODE = "authorization_code"
GRANT_REFRESH_TOKEN = "refresh_token"  # noqa: S105 (a grant type name, not a password)
GRANT_CLIENT_CREDENTIALS = "client_credentials"
# RFC 8693 token exchange: a native app trades the code TikTok's SDK gave it (see flows/sdk_exchange.py).
GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 (a grant, no password)
# RFC 8628: devices without a browser (see flows/device.py).
GRANT_DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
GRANT_TYPES = (GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN, GRANT_CLIENT_CREDENTIALS,
               GRANT_TOKEN_EXCHANGE, GRANT_DEVICE_CODE)
DEFAULT_GRANT_TYPES = (GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN)
ID_TOKEN_ALGORITHMS = ("RS256", "ES256")
# The scope that lets an app end the user's other sessions, log out everywhere and delete the account.
ACCOUNT_SCOPE = "account"
CLIENT_ID = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_TIKTOK_REDIRECT = 512  # TikTok's limit on a registered redirect URI
FIELDS = frozenset({
    "client_id", "client_secret_sha256", "token_endpoint_auth_method", "redirect_uris", "scopes", "audience",
    "client_name", "first_party", "grant_types", "post_logout_redirect_uris", "backchannel_logout_uri",
    "allowed_cors_origins", "id_token_signed_response_alg", "require_pushed_authorization_requests",
    "tiktok_redirect_uris", "dpop_bound_access_tokens",
})


def redirect_uri_problem(uri: object) -> str | None:
    if not isinstance(uri, str) or not uri:
        return "must be a non-empty string"
    parts = urlsplit(uri)
    if not parts.scheme or parts.fragment:
        return "must be absolute and have no fragment"
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        return "http is allowed only for loopback hosts (anyone on the path could read the code)"
    if parts.scheme == "https" and not parts.hostname:
        return "needs a host"
    return None


def tiktok_redirect_problem(uri: object) -> str | None:
    """A redirect URI registered at TikTok for a mobile app's SDK: an https universal link or app link, without
    query or fragment, under TikTok's length limit."""
    if not isinstance(uri, str) or not uri:
        return "must be a non-empty string"
    parts = urlsplit(uri)
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment or parts.username:
        return "must be an https URL with a host and no query, fragment or credentials (TikTok's rule for apps)"
    if len(uri) >= MAX_TIKTOK_REDIRECT:
        return f"must be shorter than {MAX_TIKTOK_REDIRECT} characters (TikTok's limit)"
    return None


def _web_url_problem(url: object) -> str | None:
    """A URL the broker itself calls: https, or http on loopback only."""
    if not isinstance(url, str) or not url:
        return "must be a non-empty string"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
        return "must be an absolute http(s) URL without a fragment"
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        return "must use https (http is allowed only for loopback hosts)"
    return None


def _origin_problem(origin: object) -> str | None:
    problem = _web_url_problem(origin)
    if problem:
        return problem
    assert isinstance(origin, str)
    parts = urlsplit(origin)
    if parts.path not in ("", "/") or parts.query or parts.username or parts.password:
        return "must be an origin only, like https://app.example.com (no path, query or credentials)"
    return None


class _Entry:
    """Reads one raw mapping, collecting every problem under the entry's name."""

    def __init__(self, where: str, raw: dict[str, Any], problems: list[str]) -> None:
        self.where = where
        self.raw = raw
        self.problems = problems

    def refuse(self, field: str, message: str) -> None:
        self.problems.append(f"{self.where}.{field}: {message}")

    def boolean(self, field: str) -> bool:
        value = self.raw.get(field, False)
        if not isinstance(value, bool):
            self.refuse(field, "must be true or false")
            return False
        return value

    def choice(self, field: str, options: tuple[str, ...], default: str) -> str:
        value = self.raw.get(field, default)
        if value not in options:
            self.refuse(field, f"must be one of {', '.join(options)}")
            return default
        return str(value)

    def text(self, field: str, limit: int) -> str | None:
        value = self.raw.get(field)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip() or len(value) > limit or not value.isprintable():
            self.refuse(field, f"must be a printable string of 1-{limit} characters")
            return None
        return value

    def strings(self, field: str, problem: Callable[[object], str | None] | None = None,
                default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.raw.get(field, list(default))
        if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
            self.refuse(field, "must be a list of non-empty strings")
            return default
        for position, item in enumerate(value):
            found = problem(item) if problem else None
            if found:
                self.problems.append(f"{self.where}.{field}[{position}]: {found}")
        return tuple(dict.fromkeys(value))


def parse_entry(index: int, raw: Any, problems: list[str]) -> dict[str, Any] | None:
    """The Client fields of one entry (defaults filled in), or None when it has no usable client_id. Problems are
    appended to `problems`; an entry with problems must not be used."""
    if not isinstance(raw, dict):
        problems.append(f"clients[{index}]: must be a mapping")
        return None
    client_id = raw.get("client_id")
    if not isinstance(client_id, str) or not CLIENT_ID.fullmatch(client_id):
        problems.append(f"clients[{index}].client_id: must be 1-128 characters of [A-Za-z0-9._~-]")
        return None
    entry = _Entry(f"clients[{index}] ({client_id})", raw, problems)
    digest = raw.get("client_secret_sha256")
    if digest is not None and (not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest)):
        entry.refuse("client_secret_sha256", "must be a lowercase hex SHA-256 digest")
    method = entry.choice("token_endpoint_auth_method", AUTH_METHODS,
                          "client_secret_basic" if digest else "none")
    if (method == "none") != (digest is None):
        problems.append(f"{entry.where}: a client has a secret digest exactly when its auth method is not 'none'")
    first_party = entry.boolean("first_party")
    scopes = entry.strings("scopes", default=("openid",))
    if ACCOUNT_SCOPE in scopes and not first_party:
        entry.refuse("scopes", f"'{ACCOUNT_SCOPE}' lets an app end the user's sessions and delete the account: "
                               "only a first_party client may have it")
    audience = raw.get("audience")
    if audience is not None and (not isinstance(audience, str) or not audience):
        entry.refuse("audience", "must be a non-empty string")
        audience = None
    grant_types = entry.strings("grant_types", lambda g: None if g in GRANT_TYPES else
                                f"unknown grant type (supported: {', '.join(GRANT_TYPES)})", DEFAULT_GRANT_TYPES)
    if GRANT_CLIENT_CREDENTIALS in grant_types and digest is None:
        entry.refuse("grant_types", "client_credentials needs a confidential client (one with a secret): a public "
                                    "client cannot prove who it is")
    tiktok_redirects = entry.strings("tiktok_redirect_uris", tiktok_redirect_problem)
    _check_token_exchange(entry, grant_types, tiktok_redirects, public=digest is None, first_party=first_party)
    backchannel = raw.get("backchannel_logout_uri")
    if backchannel is not None:
        found = _web_url_problem(backchannel)
        if found:
            entry.refuse("backchannel_logout_uri", found)
            backchannel = None
    unknown = set(raw) - FIELDS
    if unknown:
        problems.append(f"{entry.where}: unknown field(s) {', '.join(sorted(unknown))} (a plain client_secret is "
                        "never accepted: store its SHA-256 in client_secret_sha256)")
    return {
        "client_id": client_id, "secret_sha256": digest if isinstance(digest, str) else None,
        "redirect_uris": entry.strings("redirect_uris", redirect_uri_problem), "scopes": scopes,
        "audience": audience, "auth_method": method, "client_name": entry.text("client_name", 100) or "",
        "first_party": first_party, "grant_types": grant_types,
        "post_logout_redirect_uris": entry.strings("post_logout_redirect_uris", redirect_uri_problem),
        "backchannel_logout_uri": backchannel if isinstance(backchannel, str) else None,
        "allowed_cors_origins": tuple(o.rstrip("/").lower() for o in entry.strings("allowed_cors_origins",
                                                                                   _origin_problem)),
        "id_token_alg": entry.choice("id_token_signed_response_alg", ID_TOKEN_ALGORITHMS, "RS256"),
        "require_par": entry.boolean("require_pushed_authorization_requests"),
        "tiktok_redirect_uris": tiktok_redirects, "dpop_bound": entry.boolean("dpop_bound_access_tokens"),
    }


def _check_token_exchange(entry: _Entry, grant_types: tuple[str, ...], tiktok_redirects: tuple[str, ...], *,
                          public: bool, first_party: bool) -> None:
    """The TikTok SDK exchange signs users in with the broker's own TikTok app (its client key is in the mobile
    app) and shows no page of the broker: only the company's own native app may use it."""
    if GRANT_TOKEN_EXCHANGE not in grant_types:
        if tiktok_redirects:
            entry.refuse("tiktok_redirect_uris", f"only the {GRANT_TOKEN_EXCHANGE} grant uses them: add it to "
                                                 "grant_types or remove them")
        return
    if not public:
        entry.refuse("grant_types", "the TikTok SDK exchange is for native apps, which keep no secret: register "
                                    "the app as a public client (token_endpoint_auth_method: none)")
    if not first_party:
        entry.refuse("grant_types", "the TikTok SDK exchange signs users in with the broker's own TikTok app and "
                                    "shows no consent page: only a first_party client may use it")
    if not tiktok_redirects:
        entry.refuse("tiktok_redirect_uris", "the TikTok SDK exchange needs the redirect URIs registered at TikTok "
                                             "for the app (its universal links or app links)")
