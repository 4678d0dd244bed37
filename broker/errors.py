"""The broker's one error tree. Each error carries a stable code, an HTTP status and a message safe to show.

    BrokerError                      500 server_error
    ├── InvalidRequest               400 invalid_request
    │   ├── InvalidReturnUrl         400 invalid_request   (return_to not on the allowlist)
    │   └── PayloadTooLarge          413 invalid_request   (a body over its endpoint's cap, refused unread)
    ├── InvalidGrant                 400 invalid_grant
    ├── DeviceGrantState             400 authorization_pending | slow_down | access_denied | expired_token (RFC 8628)
    ├── UnsupportedGrantType         400 unsupported_grant_type
    ├── UnauthorizedClient           400 unauthorized_client (the client is not registered for this grant)
    ├── InvalidScope                 400 invalid_scope
    ├── InvalidTarget                400 invalid_target    (RFC 8693: an audience or resource it cannot serve)
    ├── InvalidDpopProof             400 invalid_dpop_proof (token endpoint) | 401 (resource endpoints, RFC 9449)
    │   └── UseDpopNonce             400 | 401 use_dpop_nonce (a proof without the server's current nonce)
    ├── InvalidClient                401 invalid_client
    ├── InvalidToken                 401 invalid_token     (missing, expired, revoked or forged credential)
    │   └── LoginRequired            401 login_required    (the user's TikTok grant is gone: sign in again)
    ├── InsufficientScope            403 insufficient_scope (the user did not grant a TikTok scope)
    ├── RateLimited                  429 rate_limited      (our own limits; Retry-After)
    ├── AccessDenied                 403 access_denied     (the user refused at TikTok)
    ├── Forbidden                    403 forbidden         (a cross-site request to a browser endpoint)
    ├── LoginFailed                  400 invalid_request   (state, binding cookie, or code problems at /callback)
    ├── NotFound                     404 not_found
    ├── MethodNotAllowed             405 method_not_allowed
    ├── Unavailable                  503 temporarily_unavailable
    │   └── StoreUnavailable         503 temporarily_unavailable   (Redis unreachable; Retry-After)
    └── UpstreamError                502 upstream_error    (TikTok answered with an error or garbage)
        ├── UpstreamUnavailable      503 temporarily_unavailable   (TikTok timed out or answered 5xx/429)
        ├── UpstreamRejected         400 invalid_grant     (TikTok refused a grant: sign in again)
        └── UpstreamRefusedRequest   502 upstream_error    (TikTok's invalid_request: a parameter it was sent)

Details that must not reach users (TikTok's log_id, exception text) go to the log only, through
`log_detail`. Translation from library exceptions happens where they are raised (store, providers); rendering
to HTTP happens in one place, `broker.web.errors`.
"""

from __future__ import annotations


class BrokerError(Exception):
    code = "server_error"
    status = 500
    default_description = "The broker could not complete the request."

    def __init__(self, description: str | None = None, *, log_detail: str = "",
                 retry_after: int | None = None) -> None:
        self.description = description or self.default_description
        self.log_detail = log_detail
        self.retry_after = retry_after
        super().__init__(self.description)


class InvalidRequest(BrokerError):
    code = "invalid_request"
    status = 400
    default_description = "The request is missing a parameter or has a malformed one."


class InvalidReturnUrl(InvalidRequest):
    default_description = "The return URL is not allowed."


class PayloadTooLarge(InvalidRequest):
    status = 413
    default_description = "The request body is too large."


class InvalidGrant(BrokerError):
    code = "invalid_grant"
    status = 400
    default_description = "The grant is invalid, expired or already used."


class DeviceGrantState(BrokerError):
    """A device polling the token endpoint learns where its authorization stands (RFC 8628 section 3.5)."""

    status = 400

    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code = code


class UnsupportedGrantType(BrokerError):
    code = "unsupported_grant_type"
    status = 400
    default_description = "This grant type is not supported."


class UnauthorizedClient(BrokerError):
    code = "unauthorized_client"
    status = 400
    default_description = "This client may not use this grant type."


class InvalidScope(BrokerError):
    code = "invalid_scope"
    status = 400
    default_description = "A requested scope is not available to this client."


class InvalidTarget(BrokerError):
    code = "invalid_target"
    status = 400
    default_description = "The requested audience or resource is not available to this client."


class InvalidDpopProof(BrokerError):
    """A DPoP proof missing, malformed, stale, replayed or from the wrong key (RFC 9449). At the token endpoint a
    400; at a resource endpoint a 401 with a DPoP challenge. `headers`: the challenge and any DPoP-Nonce."""

    code = "invalid_dpop_proof"
    status = 400
    default_description = "The DPoP proof is missing or invalid."

    def __init__(self, description: str | None = None, *, status: int = 400, log_detail: str = "",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(description, log_detail=log_detail)
        self.status = status
        self.headers = headers or {}


class UseDpopNonce(InvalidDpopProof):
    code = "use_dpop_nonce"
    default_description = "Send the DPoP proof again with the nonce in the DPoP-Nonce header."


class InvalidClient(BrokerError):
    code = "invalid_client"
    status = 401
    default_description = "Client authentication failed."


class InvalidToken(BrokerError):
    code = "invalid_token"
    status = 401
    default_description = "The credential is missing, expired or revoked."


class LoginRequired(InvalidToken):
    code = "login_required"
    default_description = "TikTok no longer accepts this user's sign-in: the user must log in again."


class InsufficientScope(BrokerError):
    code = "insufficient_scope"
    status = 403
    default_description = "The user did not grant the TikTok scope this request needs."


class RateLimited(BrokerError):
    code = "rate_limited"
    status = 429
    default_description = "Too many requests. Please retry later."


class AccessDenied(BrokerError):
    code = "access_denied"
    status = 403
    default_description = "Access was denied."


class Forbidden(BrokerError):
    code = "forbidden"
    status = 403
    default_description = "This request could not be verified as coming from this site."


class LoginFailed(BrokerError):
    code = "invalid_request"
    status = 400
    default_description = "This sign-in link is invalid or has expired. Please start again."


class NotFound(BrokerError):
    code = "not_found"
    status = 404
    default_description = "Not found."


class MethodNotAllowed(BrokerError):
    code = "method_not_allowed"
    status = 405
    default_description = "Method not allowed."


class Unavailable(BrokerError):
    code = "temporarily_unavailable"
    status = 503
    default_description = "The service is temporarily unavailable. Please retry shortly."

    def __init__(self, description: str | None = None, *, log_detail: str = "",
                 retry_after: int | None = 5) -> None:
        super().__init__(description, log_detail=log_detail, retry_after=retry_after)


class StoreUnavailable(Unavailable):
    default_description = "The session store is unavailable. Please retry shortly."


class UpstreamError(BrokerError):
    code = "upstream_error"
    status = 502
    default_description = "TikTok returned an unexpected answer. Please try again."


class UpstreamUnavailable(UpstreamError):
    code = "temporarily_unavailable"
    status = 503
    default_description = "TikTok is not answering right now. Please try again shortly."

    def __init__(self, description: str | None = None, *, log_detail: str = "",
                 retry_after: int | None = 5) -> None:
        super().__init__(description, log_detail=log_detail, retry_after=retry_after)


class UpstreamRejected(UpstreamError):
    """TikTok refused a grant (for example a revoked refresh token): the user has to sign in again."""

    code = "invalid_grant"
    status = 400
    default_description = "TikTok no longer accepts this sign-in. Please sign in again."


class UpstreamRefusedRequest(UpstreamError):
    """TikTok answered `invalid_request` (for a code: a redirect URI or PKCE verifier it does not accept). For the
    broker's own calls that is a fault on our side (502); the TikTok SDK exchange, whose app supplied those
    values, answers it as invalid_grant."""


class ConfigError(Exception):
    """Configuration problems, all of them at once; each names its variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))
