"""An "AI search" API on Flask, billed through meterstream.

- ``GET /search?q=...``: one ``ai_search_api`` use per call.
- ``POST /complete`` ``{"prompt": "..."}``: ``llm_tokens`` billed by value.
- Every successful request is also one ``api_requests`` use.

meterstream's core settings come from ``METERSTREAM_*`` environment
variables (any given in ``app.config["METERSTREAM"]`` win); run it against
the local emulator as README.md shows.
"""

from __future__ import annotations

from typing import Any, Optional

from flask import Flask, Request, abort, jsonify, request

import meterstream
from meterstream.integrations.flask import Meterstream, stripe_webhook

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


@meterstream.meter("ai_search_api")
def run_search(query: str) -> list[dict[str, Any]]:
    words = query.split() or ["nothing"]
    return [{"title": f"All about {word}", "score": 1.0 / (i + 1)} for i, word in enumerate(words)]


@meterstream.meter("llm_tokens", value=lambda call: call.result["usage"]["total_tokens"])
def run_completion(prompt: str) -> dict[str, Any]:
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


def billable_customer() -> str:
    customer = meterstream.current_customer()  # set by the Meterstream extension
    if customer is None:
        abort(401, description="Unknown API key.")
    return customer


def create_app() -> Flask:
    app = Flask(__name__)
    app.config["METERSTREAM"] = {
        "customer_resolver": customer_from_request,
        "request_event": "api_requests",  # one use per 2xx response
    }
    Meterstream(app)
    # Stripe's asynchronous error reports (secret: METERSTREAM_WEBHOOK_SECRET
    # or STRIPE_WEBHOOK_SECRET); see docs/reconciliation.md.
    app.add_url_rule("/stripe/webhook", view_func=stripe_webhook, methods=["POST"])

    @app.get("/search")
    def search() -> Any:
        customer = billable_customer()
        return jsonify(customer=customer, results=run_search(request.args.get("q", "")))

    @app.post("/complete")
    def complete() -> Any:
        customer = billable_customer()
        body = request.get_json(silent=True) or {}
        if not isinstance(body.get("prompt"), str):
            abort(400, description='Expected {"prompt": "..."}.')
        return jsonify(customer=customer, **run_completion(body["prompt"]))

    return app


app = create_app()
