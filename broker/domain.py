"""Value types shared by the layers, in the broker's own words (never a provider's field names)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProviderTokens:
    """An upstream grant: what TikTok returned at the token endpoint, with absolute expiry instants."""

    subject: str  # TikTok open_id
    access_token: str
    refresh_token: str
    expires_at: float
    refresh_expires_at: float
    scopes: frozenset[str]


@dataclass(frozen=True)
class Identity:
    """Who the upstream says the user is. Optional fields are None when the scope was not granted."""

    provider: str
    subject: str  # TikTok open_id: stable per app, the account key
    display_name: str = ""
    avatar_url: str = ""
    union_id: str | None = None
    username: str | None = None
    profile: dict[str, str | int | bool] = field(default_factory=dict)


@dataclass(frozen=True)
class LoginAttempt:
    """A login in flight between /login and /callback, stored under the hash of its state for 10 minutes."""

    code_verifier: str
    nonce: str
    return_to: str
    binding_hash: str  # SHA-256 of the browser-binding cookie value
    created_at: float
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class Session:
    """A browser session: the server side of the session cookie."""

    sid: str
    user_id: str
    created_at: float
    last_seen: float
    expires_at: float  # absolute end
    idle_expires_at: float
    scopes: tuple[str, ...]
    open_id: str = ""
    name: str = ""
    picture: str = ""
    kind: str = "browser"  # "browser": behind a cookie; "refresh": a refresh-token family
    client_id: str = ""  # the OAuth client a refresh family was issued to ("" for the broker's own pages)
    parent_sid: str = ""  # the browser session a refresh family came from: ending that ends this too
    client_scopes: tuple[str, ...] = ()  # what an OAuth client was granted (openid, profile), beside TikTok's
    user_agent: str = ""
    ip: str = ""
    auth_time: float = 0.0  # a family's: when the user signed in at TikTok for the session it came from
    jkt: str = ""  # a public client's family: the DPoP key (RFC 7638 thumbprint) its refresh token is bound to

    @property
    def signed_in_at(self) -> float:
        """When the user last authenticated for this session or family (OpenID's auth_time)."""
        return self.auth_time or self.created_at


@dataclass(frozen=True)
class IssuedToken:
    """A signed broker access JWT with its claims."""

    token: str = field(repr=False)
    claims: dict[str, object]
    expires_at: float


@dataclass(frozen=True)
class TokenPair:
    """What the token endpoint returns (RFC 6749 section 5.1)."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: int
    scope: str
