"""An "AI search" API on FastAPI, billed through meterstream.

- ``GET /search?q=...``: one ``ai_search_api`` use per call.
- ``POST /complete`` ``{"prompt": "..."}``: ``llm_tokens`` billed by value,
  the tokens the completion used.
- Every successful request is also one ``api_requests`` use (the middleware's
  ``request_event``).

The customer comes from an API key (``X-Api-Key``, looked up in a table), or
from ``X-Customer-Id``, which only an authenticating gateway in front of the
app may set. meterstream is configured from ``METERSTREAM_*`` environment
variables; run it against the local emulator as README.md shows.
"""

from __future__ import annotations

from typing import Any, Optional

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel
from starlette.requests import Request

import meterstream
from meterstream.integrations.asgi import MeterstreamMiddleware, StripeWebhook, current_customer

#: API key -> Stripe customer. A real app keeps this in its database.
API_KEYS = {"key_alice": "cus_alice", "key_bob": "cus_bob"}


def customer_from_request(request: Request) -> Optional[str]:
    """The customer of a request: its API key's, else the gateway's header."""
    api_key = request.headers.get("X-Api-Key")
    if api_key is not None:
        return API_KEYS.get(api_key)
    # Trusted because this service only runs behind a gateway that
    # authenticates callers and sets (or strips) X-Customer-Id itself.
    return request.headers.get("X-Customer-Id")


app = FastAPI(title="AI search")
app.add_middleware(
    MeterstreamMiddleware,
    customer_resolver=customer_from_request,
    request_event="api_requests",
)
# Stripe's asynchronous error reports (secret: METERSTREAM_WEBHOOK_SECRET or
# STRIPE_WEBHOOK_SECRET); see docs/reconciliation.md.
app.add_route("/stripe/webhook", StripeWebhook(), methods=["POST"])


@meterstream.meter("ai_search_api")
def run_search(query: str) -> list[dict[str, Any]]:
    words = query.split() or ["nothing"]
    return [{"title": f"All about {word}", "score": 1.0 / (i + 1)} for i, word in enumerate(words)]


@meterstream.meter("llm_tokens", value=lambda call: call.result["usage"]["total_tokens"])
async def run_completion(prompt: str) -> dict[str, Any]:
    completion = "Here is a short answer to: " + prompt
    prompt_tokens, completion_tokens = len(prompt.split()), len(completion.split())
    return {
        "text": completion,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


async def billable_customer(customer: Optional[str] = Depends(current_customer)) -> str:
    if customer is None:
        raise HTTPException(status_code=401, detail="Unknown API key.")
    return customer


class Prompt(BaseModel):
    prompt: str


@app.get("/search")
def search(q: str, customer: str = Depends(billable_customer)) -> dict[str, Any]:
    return {"customer": customer, "results": run_search(q)}


@app.post("/complete")
async def complete(body: Prompt, customer: str = Depends(billable_customer)) -> dict[str, Any]:
    return {"customer": customer, **(await run_completion(body.prompt))}
