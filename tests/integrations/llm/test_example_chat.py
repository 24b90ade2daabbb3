"""The chat example against the fake model server and the emulator: each customer, its tokens."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import pytest

import meterstream
from meterstream.emulator import Emulator
from meterstream.testing.llm import FakeModelServer

ROOT = Path(__file__).resolve().parents[3]


def test_the_chat_example_bills_each_customer_the_tokens_its_chats_used(
    fake: FakeModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("fastapi")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*httpx2")
        from starlette.testclient import TestClient
    monkeypatch.setenv("OPENAI_BASE_URL", fake.openai_base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.anthropic_base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fake")
    monkeypatch.syspath_prepend(str(ROOT))
    example = importlib.import_module("examples.llm_chat.app")
    chats = [
        ("cus_alice", {"message": "hello there", "provider": "openai"}),
        ("cus_alice", {"message": "tell me more please", "provider": "openai", "stream": True}),
        ("cus_bob", {"message": "hi", "provider": "anthropic"}),
        ("cus_bob", {"message": "and a story", "provider": "anthropic", "stream": True}),
        ("cus_carol", {"message": "one two three four", "provider": "openai", "stream": True}),
    ]
    with Emulator(auto_create_meters=True) as emulator:
        meter = meterstream.configure(
            api_key="sk_test_chat", api_base=emulator.url, stream_base=emulator.url
        )
        with TestClient(example.create_app()) as http:
            for customer, body in chats:
                reply = http.post("/chat", json=body, headers={"X-Customer-Id": customer})
                assert reply.status_code == 200, reply.text
                text = reply.text if body.get("stream") else reply.json()["reply"]
                assert text.strip() == "Hello from the fake model"
        assert meter.flush(10)
        billed: dict[str, int] = {}
        for event in emulator.state.events("token-billing-tokens"):
            billed[event["customer"]] = billed.get(event["customer"], 0) + int(event["value"])
    reported: dict[str, int] = {}
    for (customer, _), call in zip(chats, fake.calls):
        reported[customer] = reported.get(customer, 0) + sum(call.tokens.values())
    assert billed == reported
    assert set(billed) == {"cus_alice", "cus_bob", "cus_carol"}
