"""The fake model server's wire: OpenAI's and Anthropic's bodies, usage blocks and SSE frames.

Each builder takes the token counts by type (:data:`TOKEN_TYPES`) and writes
them the way the provider does (OpenAI's totals include the cached and
reasoning tokens; Anthropic's input leaves the cache out).
"""

from __future__ import annotations

from typing import Any, Optional

__all__ = [
    "TOKEN_TYPES",
    "Frame",
    "chat_body",
    "chat_frames",
    "clean",
    "message_body",
    "messages_frames",
    "response_body",
    "responses_frames",
]

TOKEN_TYPES = ("input", "cached_input", "cache_write", "output", "reasoning")


def clean(tokens: dict[str, int]) -> dict[str, int]:
    return {t: tokens[t] for t in TOKEN_TYPES if tokens.get(t)}


def openai_chat_usage(t: dict[str, int]) -> dict[str, Any]:
    prompt = t["input"] + t["cached_input"] + t["cache_write"]
    completion = t["output"] + t["reasoning"]
    details: dict[str, Any] = {"cached_tokens": t["cached_input"]}
    if t["cache_write"]:
        details["cache_write_tokens"] = t["cache_write"]
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": details,
        "completion_tokens_details": {"reasoning_tokens": t["reasoning"]},
    }


def responses_usage(t: dict[str, int]) -> dict[str, Any]:
    chat = openai_chat_usage(t)
    return {
        "input_tokens": chat["prompt_tokens"],
        "output_tokens": chat["completion_tokens"],
        "total_tokens": chat["total_tokens"],
        "input_tokens_details": {
            "cached_tokens": t["cached_input"],
            "cache_write_tokens": t["cache_write"],
        },
        "output_tokens_details": {"reasoning_tokens": t["reasoning"]},
    }


def anthropic_usage(t: dict[str, int], output: Optional[int] = None) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "input_tokens": t["input"],
        "cache_creation_input_tokens": t["cache_write"],
        "cache_read_input_tokens": t["cached_input"],
        "output_tokens": t["output"] + t["reasoning"] if output is None else output,
    }
    if t["reasoning"] and output is None:
        usage["output_tokens_details"] = {"thinking_tokens": t["reasoning"]}
    return usage


#: One frame of a stream: (event name or None, data, tokens reported once it is sent).
Frame = tuple[Optional[str], Any, Optional[dict[str, int]]]


def chat_body(model: str, reply: str, t: dict[str, int], usage: bool) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": reply},
            }
        ],
        "usage": openai_chat_usage(t) if usage else None,
    }


def chat_frames(model: str, reply: str, t: dict[str, int], body: dict[str, Any]) -> list[Frame]:
    include = bool((body.get("stream_options") or {}).get("include_usage"))
    base: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
    }
    if include:
        base["usage"] = None
    deltas = [{"role": "assistant", "content": ""}] + [{"content": w + " "} for w in reply.split()]
    frames: list[Frame] = [
        (None, {**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]}, None)
        for d in deltas
    ]
    frames.append(
        (None, {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}, None)
    )
    if include and t:
        frames.append((None, {**base, "choices": [], "usage": openai_chat_usage(t)}, clean(t)))
    frames.append((None, "[DONE]", None))
    return frames


def response_body(
    model: str, reply: str, t: dict[str, int], status: str, usage: bool
) -> dict[str, Any]:
    output = []
    if status == "completed":
        output = [
            {
                "type": "message",
                "id": "msg_fake",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": reply, "annotations": []}],
            }
        ]
    return {
        "id": "resp_fake",
        "object": "response",
        "created_at": 1,
        "model": model,
        "status": status,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": responses_usage(t) if usage else None,
    }


def responses_frames(model: str, reply: str, t: dict[str, int], usage: bool) -> list[Frame]:
    events: list[dict[str, Any]] = [
        {
            "type": "response.created",
            "response": response_body(model, reply, t, "in_progress", False),
        },
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {
                "type": "message",
                "id": "msg_fake",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            },
        },
        {
            "type": "response.content_part.added",
            "output_index": 0,
            "item_id": "msg_fake",
            "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": []},
        },
    ]
    for word in reply.split():
        events.append(
            {
                "type": "response.output_text.delta",
                "output_index": 0,
                "item_id": "msg_fake",
                "content_index": 0,
                "delta": word + " ",
                "logprobs": [],
            }
        )
    done = response_body(model, reply, t, "completed", usage)
    events.append(
        {"type": "response.output_item.done", "output_index": 0, "item": done["output"][0]}
    )
    events.append({"type": "response.completed", "response": done})
    frames: list[Frame] = []
    for number, event in enumerate(events):
        event["sequence_number"] = number
        reported = clean(t) if usage and event["type"] == "response.completed" else None
        frames.append((event["type"], event, reported))
    return frames


def message_body(model: str, reply: str, t: dict[str, int], usage: bool) -> dict[str, Any]:
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": reply}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": anthropic_usage(t) if usage else None,
    }


def messages_frames(model: str, reply: str, t: dict[str, int], usage: bool) -> list[Frame]:
    interim = min(1, t["output"] + t["reasoning"])
    start = {**message_body(model, reply, t, False), "content": [], "stop_reason": None}
    started: Optional[dict[str, int]] = None
    if usage:
        start["usage"] = anthropic_usage(t, output=interim)
        started = clean({**t, "output": interim, "reasoning": 0})
    else:
        start.pop("usage")
    frames: list[Frame] = [
        ("message_start", {"type": "message_start", "message": start}, started),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            None,
        ),
        ("ping", {"type": "ping"}, None),
    ]
    for word in reply.split():
        delta = {"type": "text_delta", "text": word + " "}
        frames.append(
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": delta},
                None,
            )
        )
    frames.append(("content_block_stop", {"type": "content_block_stop", "index": 0}, None))
    delta_event: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
    }
    if usage:
        delta_event["usage"] = anthropic_usage(t)
    frames.append(("message_delta", delta_event, clean(t) if usage else None))
    frames.append(("message_stop", {"type": "message_stop"}, None))
    return frames
