"""The route table: one line per path. openapi.yaml mirrors it (a test keeps the two identical).

The order decides which route answers when two could (a path with parameters against an exact one); exact paths are
found in a dict (broker.web.router), so an endpoint's place in the list costs nothing."""

from __future__ import annotations

from starlette.routing import Route

from broker.web import account, cors, device, gateway, health, oauth, oidc, pages, tiktok_proxy, webhooks, wellknown

ROUTES = [
    Route("/auth/verify", gateway.verify, methods=["GET"]),
    Route("/auth/verify/{path:path}", gateway.verify_envoy, methods=["GET", "POST", "PUT", "PATCH", "DELETE",
                                                                     "OPTIONS"]),
    Route("/", pages.home, methods=["GET"]),
    Route("/login", pages.login, methods=["GET"]),
    Route("/callback", pages.callback, methods=["GET"]),
    Route("/logout", account.logout, methods=["POST"]),
    Route("/logout", account.logout_page, methods=["GET"]),
    Route("/account", account.account_page, methods=["GET"]),
    Route("/account", account.delete_by_api, methods=["DELETE"]),
    Route("/account/sessions/end", account.end_session, methods=["POST"]),
    Route("/account/apps/revoke", account.revoke_app, methods=["POST"]),
    Route("/account/delete", account.delete_page, methods=["GET"]),
    Route("/account/delete", account.delete_confirmed, methods=["POST"]),
    Route("/authorize", oidc.authorize, methods=["GET"]),
    Route("/authorize/resume", oidc.resume, methods=["GET"]),
    Route("/authorize/consent", oidc.consent, methods=["POST"]),
    Route("/userinfo", oidc.userinfo, methods=["GET", "POST"]),
    Route("/userinfo", cors.preflight, methods=["OPTIONS"]),
    Route("/oauth/token", oauth.token, methods=["POST"]),
    Route("/oauth/token", cors.preflight, methods=["OPTIONS"]),
    Route("/oauth/revoke", oauth.revoke, methods=["POST"]),
    Route("/oauth/revoke", cors.preflight, methods=["OPTIONS"]),
    Route("/oauth/introspect", oauth.introspect, methods=["POST"]),
    Route("/oauth/introspect", cors.preflight, methods=["OPTIONS"]),
    Route("/oauth/device_authorization", device.device_authorization, methods=["POST"]),
    Route("/device", device.device_page, methods=["GET"]),
    Route("/device", device.enter_code, methods=["POST"]),
    Route("/device/confirm", device.confirm, methods=["POST"]),
    Route("/oauth/par", oauth.par, methods=["POST"]),
    Route("/oauth/par", cors.preflight, methods=["OPTIONS"]),
    Route("/tiktok/{path:path}", tiktok_proxy.proxy, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    Route("/.well-known/jwks.json", wellknown.jwks, methods=["GET"]),
    Route("/.well-known/openid-configuration", wellknown.openid_configuration, methods=["GET"]),
    Route("/.well-known/oauth-authorization-server", wellknown.openid_configuration, methods=["GET"]),
    Route("/webhooks/tiktok", webhooks.tiktok, methods=["POST"]),
    Route("/healthz", health.healthz, methods=["GET"]),
    Route("/readyz", health.readyz, methods=["GET"]),
    Route("/metrics", health.metrics, methods=["GET"]),
]
