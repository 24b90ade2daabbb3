"""The API: a sync view billed per call, an async view billed by tokens."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, JsonResponse

import meterstream


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


def unknown_customer() -> JsonResponse:
    return JsonResponse({"detail": "Unknown API key."}, status=401)


def search(request: HttpRequest) -> JsonResponse:
    customer = meterstream.current_customer()  # set by MeterstreamMiddleware
    if customer is None:
        return unknown_customer()
    return JsonResponse({"customer": customer, "results": run_search(request.GET.get("q", ""))})


async def complete(request: HttpRequest) -> JsonResponse:
    if request.method != "POST":
        return JsonResponse({"detail": "Use POST."}, status=405)
    customer = meterstream.current_customer()
    if customer is None:
        return unknown_customer()
    try:
        prompt = json.loads(request.body)["prompt"]
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"detail": 'Expected {"prompt": "..."}.'}, status=400)
    return JsonResponse({"customer": customer, **run_completion(prompt)})
