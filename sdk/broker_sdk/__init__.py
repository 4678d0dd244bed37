"""tiktok-broker's SDK for downstream services: verify its access tokens offline, introspect them, call TikTok
through the broker (`broker_sdk.tiktok`). Depends on httpx and PyJWT only; `broker_sdk.asgi` needs Starlette
(`pip install tiktok-broker-sdk[asgi]`).

Protect a Starlette app (the issuer's JWKS is fetched from /.well-known/jwks.json and cached):

```python
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import Route
from broker_sdk import BrokerVerifier
from broker_sdk.asgi import BrokerAuthMiddleware

verifier = BrokerVerifier("https://auth.example.com", audience="https://api.example.com")
async def me(request):  # only reached with a valid token; its claims are in request.state
    return JSONResponse({"sub": request.state.broker_claims["sub"]})
app = Starlette(routes=[Route("/me", me)],
                middleware=[Middleware(BrokerAuthMiddleware, verifier=verifier, exempt_paths=("/healthz",))])
```

In FastAPI, per route instead: `claims: dict = Depends(broker_sdk.asgi.require_claims(verifier))`. Elsewhere:
`claims = await verifier.verify(token)` raises TokenRejected (answer 401) or VerifierUnavailable (503).
For revocation within seconds add `introspection=Introspection(url, client_id, client_secret)`. A token bound to
a DPoP key (`cnf.jkt`, sent as `Authorization: DPoP`) needs its proof checked too: `broker_sdk.dpop.DPoPChecker`.
"""

from broker_sdk.dpop import DPoPChecker, DPoPProof, DPoPRejected
from broker_sdk.errors import TokenRejected, VerifierUnavailable
from broker_sdk.introspection import Introspection
from broker_sdk.jwks import JwksCache, JwksStats
from broker_sdk.keys import VerificationKey
from broker_sdk.verifier import BrokerVerifier, Claims

__all__ = [
    "BrokerVerifier",
    "Claims",
    "DPoPChecker",
    "DPoPProof",
    "DPoPRejected",
    "Introspection",
    "JwksCache",
    "JwksStats",
    "TokenRejected",
    "VerificationKey",
    "VerifierUnavailable",
]
