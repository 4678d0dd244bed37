"""The flows and settings a request handler may use, reached through the application's state."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection
from starlette.templating import Jinja2Templates

from broker.clients import ClientRegistry
from broker.config import Settings
from broker.flows.account import AccountFlow
from broker.flows.consent import ConsentFlow
from broker.flows.csrf import FormTokens
from broker.flows.device import DeviceFlow
from broker.flows.discovery import Discovery
from broker.flows.dpop import DPoPGuard
from broker.flows.events import Events
from broker.flows.login import LoginFlow
from broker.flows.logout import RpLogout
from broker.flows.oidc import OidcFlow
from broker.flows.oidc_tokens import OidcTokens
from broker.flows.request_limits import RequestLimits
from broker.flows.revocations import TikTokRevoker
from broker.flows.sdk_exchange import SdkExchange
from broker.flows.sessions import SessionService
from broker.flows.tiktok_api import TikTokApi
from broker.flows.tiktok_webhook import TikTokWebhooks
from broker.flows.tokens import TokenFlow
from broker.flows.upstream import UpstreamTokens
from broker.metrics import Metrics


@dataclass(frozen=True)
class Services:
    settings: Settings
    login: LoginFlow
    sessions: SessionService
    tokens: TokenFlow
    clients: ClientRegistry
    account: AccountFlow
    webhooks: TikTokWebhooks
    form_tokens: FormTokens
    metrics: Metrics
    upstream: UpstreamTokens
    events: Events
    revoker: TikTokRevoker
    oidc: OidcFlow
    oidc_tokens: OidcTokens
    consent: ConsentFlow
    logout: RpLogout
    discovery: Discovery
    templates: Jinja2Templates
    tiktok_api: TikTokApi
    limits: RequestLimits
    sdk_exchange: SdkExchange
    device: DeviceFlow
    dpop: DPoPGuard


def services(request: HTTPConnection) -> Services:
    found: Services = request.app.state.services
    return found
