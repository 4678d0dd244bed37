"""Verify the broker's access tokens in a downstream Python service (depends on no other part of `broker`).

Protect a Starlette app (the issuer's JWKS is fetched from /.well-known/jwks.json and cached):

```python
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import Route
from broker.verify import BrokerAuthMiddleware, BrokerVerifier

verifier = BrokerVerifier("https://auth.example.com", audience="https://api.example.com")
async def me(request):  # only reached with a valid token; its claims are in request.state
    return JSONResponse({"sub": request.state.broker_claims["sub"]})
app = Starlette(routes=[Route("/me", me)],
                middleware=[Middleware(BrokerAuthMiddleware, verifier=verifier, exempt_paths=("/healthz",))])
```

In FastAPI, per route instead: `claims: dict = Depends(require_claims(verifier))`. Elsewhere:
`claims = await verifier.verify(token)` raises TokenRejected (answer 401) or VerifierUnavailable (503).
For revocation within seconds add `introspection=Introspection(url, client_id, client_secret)`.
"""

from broker.verify.asgi import STATE_KEY, BrokerAuthMiddleware, bearer_token, require_claims
from broker.verify.errors import TokenRejected, VerifierUnavailable
from broker.verify.introspection import Introspection
from broker.verify.jwks import JwksCache, JwksStats
from broker.verify.keys import VerificationKey
from broker.verify.verifier import BrokerVerifier, Claims

__all__ = [
    "STATE_KEY",
    "BrokerAuthMiddleware",
    "BrokerVerifier",
    "Claims",
    "Introspection",
    "JwksCache",
    "JwksStats",
    "TokenRejected",
    "VerificationKey",
    "VerifierUnavailable",
    "bearer_token",
    "require_claims",
]
