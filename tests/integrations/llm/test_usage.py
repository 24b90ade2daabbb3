"""Reading a usage block: the SDKs' pydantic models, their JSON dicts and other objects alike."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pydantic
import pytest
from anthropic.types import Usage
from openai.types import CompletionUsage
from openai.types.responses import ResponseUsage

from meterstream.integrations._llm.meter import fields
from meterstream.integrations.anthropic import usage_counts as anthropic_counts
from meterstream.integrations.openai import usage_counts as openai_counts

CHAT = {
    "prompt_tokens": 40,
    "completion_tokens": 20,
    "total_tokens": 60,
    "prompt_tokens_details": {"cached_tokens": 12, "cache_write_tokens": 4},
    "completion_tokens_details": {"reasoning_tokens": 6},
}
RESPONSES = {
    "input_tokens": 40,
    "output_tokens": 20,
    "total_tokens": 60,
    "input_tokens_details": {"cached_tokens": 12, "cache_write_tokens": 0},
    "output_tokens_details": {"reasoning_tokens": 6},
}
ANTHROPIC = {
    "input_tokens": 28,
    "output_tokens": 20,
    "cache_read_input_tokens": 12,
    "cache_creation_input_tokens": 4,
}


def _namespace(value: Any) -> Any:
    if isinstance(value, dict):
        return SimpleNamespace(**{k: _namespace(v) for k, v in value.items()})
    return value


@pytest.mark.parametrize(
    "usage",
    [CompletionUsage.model_validate(CHAT), CHAT, _namespace(CHAT)],
    ids=["model", "dict", "object"],
)
def test_chat_usage_reads_the_same_as_a_model_a_dict_or_an_object(usage: Any) -> None:
    assert openai_counts(usage) == [
        ("input", 24),
        ("cached_input", 12),
        ("cache_write", 4),
        ("output", 14),
        ("reasoning", 6),
    ]


@pytest.mark.parametrize(
    "usage", [ResponseUsage.model_validate(RESPONSES), RESPONSES], ids=["model", "dict"]
)
def test_responses_usage_has_no_prompt_tokens_and_reads_input_tokens(usage: Any) -> None:
    assert openai_counts(usage) == [
        ("input", 28),
        ("cached_input", 12),
        ("output", 14),
        ("reasoning", 6),
    ]


@pytest.mark.parametrize(
    "usage", [Usage.model_validate(ANTHROPIC), ANTHROPIC], ids=["model", "dict"]
)
def test_anthropic_usage_without_output_details_bills_the_whole_output(usage: Any) -> None:
    assert anthropic_counts(usage) == [
        ("input", 28),
        ("cached_input", 12),
        ("cache_write", 4),
        ("output", 20),
    ]


def test_a_field_the_sdk_model_does_not_declare_is_read_from_its_extras() -> None:
    class Details(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="allow")
        cached_tokens: int = 0

    details = Details.model_validate({"cached_tokens": 3, "cache_write_tokens": 2})
    assert fields(details).get("cache_write_tokens") == 2
    assert fields(details).get("cached_tokens") == 3
    assert fields(details).get("absent") is None
    usage = SimpleNamespace(prompt_tokens=10, completion_tokens=1, prompt_tokens_details=details)
    assert openai_counts(usage) == [
        ("input", 5),
        ("cached_input", 3),
        ("cache_write", 2),
        ("output", 1),
    ]


def test_malformed_details_keep_the_totals_whole() -> None:
    assert openai_counts({**CHAT, "prompt_tokens_details": {"cached_tokens": 99}}) == [
        ("input", 40),
        ("output", 14),
        ("reasoning", 6),
    ]
    assert openai_counts({**CHAT, "completion_tokens_details": {"reasoning_tokens": "6"}}) == [
        ("input", 24),
        ("cached_input", 12),
        ("cache_write", 4),
        ("output", 20),
    ]
    assert openai_counts(None) is None
    assert fields(None).get("anything") is None
