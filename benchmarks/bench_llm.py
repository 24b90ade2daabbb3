"""What token metering adds to an OpenAI / Anthropic call, beside the same call uninstrumented.

The fake model server (meterstream.testing.llm) runs in a child process, so
this process's CPU time (``time.process_time``: every thread, meterstream's
own included) is the client side only. Each round makes the same calls with
a plain client and with an instrumented one, alternating; the numbers are
the medians over the rounds, in microseconds of CPU per call, and per
streamed chunk for the long streams.

    python benchmarks/bench_llm.py [--rounds 7] [--calls 300]

A script, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import warnings
from typing import Any, Callable

import meterstream
from meterstream.integrations import anthropic as metered_anthropic
from meterstream.integrations import openai as metered_openai

SERVER = (
    "from meterstream.testing.llm import FakeModelServer\n"
    "import sys\n"
    "s = FakeModelServer().start()\n"
    "print(s.url, flush=True)\n"
    "sys.stdin.read()\n"
)
HI = [{"role": "user", "content": "hello there"}]
LONG = {"x-fake-reply": " ".join(["tok"] * 200)}  # 200 content chunks


def cpu_per_call(fn: Callable[[], Any], calls: int) -> float:
    start = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import anthropic
    import openai

    server = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    url = server.stdout.readline().strip()
    meter = meterstream.configure(exporter="memory", flush_interval=3600)
    try:

        def oa() -> Any:
            return openai.OpenAI(base_url=url + "/v1", api_key="sk-bench", max_retries=0)

        def an() -> Any:
            return anthropic.Anthropic(base_url=url, api_key="sk-bench", max_retries=0)

        plain_o, inst_o = oa(), metered_openai.instrument(oa())
        plain_a, inst_a = an(), metered_anthropic.instrument(an())

        def cases(o: Any, a: Any) -> dict[str, Callable[[], Any]]:
            return {
                "openai chat": lambda: o.chat.completions.create(model="gpt-4o-mini", messages=HI),
                "openai chat stream (200 chunks)": lambda: list(
                    o.chat.completions.create(
                        model="gpt-4o-mini", messages=HI, stream=True, extra_headers=LONG
                    )
                ),
                "openai responses": lambda: o.responses.create(model="gpt-5", input="hello"),
                "openai embeddings": lambda: o.embeddings.create(model="e", input="hello"),
                "anthropic messages": lambda: a.messages.create(
                    model="claude-sonnet-4-5", max_tokens=100, messages=HI
                ),
                "anthropic stream (200 chunks)": lambda: list(
                    a.messages.create(
                        model="claude-sonnet-4-5",
                        max_tokens=1000,
                        messages=HI,
                        stream=True,
                        extra_headers=LONG,
                    )
                ),
            }

        plain, inst = cases(plain_o, plain_a), cases(inst_o, inst_a)
        results: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in plain}
        with meterstream.customer("cus_bench"):
            for name in plain:  # warm up both
                cpu_per_call(plain[name], 20)
                cpu_per_call(inst[name], 20)
            for _ in range(args.rounds):
                for name in plain:
                    calls = args.calls // 10 if "200" in name else args.calls
                    results[name][0].append(cpu_per_call(plain[name], calls))
                    results[name][1].append(cpu_per_call(inst[name], calls))
                    meter.exporter.clear()  # type: ignore[attr-defined]
        print(f"{'call':34} {'plain µs':>10} {'metered µs':>11} {'added µs':>9} {'added %':>8}")
        for name, (p, i) in results.items():
            mp, mi = statistics.median(p), statistics.median(i)
            line = f"{name:34} {mp:10.1f} {mi:11.1f} {mi - mp:9.1f} {(mi - mp) / mp * 100:7.1f}%"
            if "200" in name:
                line += f"   ({(mi - mp) / 200:.2f} µs per chunk)"
            print(line)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(10)
        meter.shutdown(0)


def isolated(iterations: int) -> None:
    """The instrumentation alone: the wrapper around a ``_post`` that answers at once.

    The end-to-end numbers above carry the HTTP round trip's noise (tens of µs
    between rounds on a shared machine); this measures what the wrapper adds
    (customer lookup, usage split, five record() calls) and what the stream
    tap adds per chunk, on the SDK's own response objects.
    """
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    from meterstream.integrations._llm.meter import TokenMeter
    from meterstream.integrations._llm.patch import _sync_post, _tap_sync
    from meterstream.integrations.openai import _begin_for, _ChatTap

    completion = ChatCompletion.model_validate(
        {
            "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "hi"}}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16,
                      "prompt_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 1},
                      "completion_tokens_details": {"reasoning_tokens": 2}},
        }
    )  # fmt: skip
    chunk = ChatCompletionChunk.model_validate(
        {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
         "choices": [{"index": 0, "delta": {"content": "tok "}, "finish_reason": None}]}
    )  # fmt: skip
    chunks = [chunk] * 200

    def stub(*args: Any, **kwargs: Any) -> Any:
        return completion

    meter = TokenMeter(
        "openai", event_name="token-billing-tokens", customer=None, meter_client=None
    )
    wrapped = _sync_post(stub, _begin_for(meter, False), meter)
    body = {"model": "gpt-4o-mini", "messages": HI}
    client = meterstream.configure(exporter="memory", flush_interval=3600)

    def per_call(fn: Callable[[], Any], n: int) -> float:
        start = time.process_time()
        for _ in range(n):
            fn()
        return (time.process_time() - start) / n * 1e6

    rows = []
    with meterstream.customer("cus_bench"):
        for _ in range(7):
            plain = per_call(lambda: stub("/chat/completions", body=body, options={}), iterations)
            inst = per_call(lambda: wrapped("/chat/completions", body=body, options={}), iterations)
            client.exporter.clear()  # type: ignore[attr-defined]
            it_plain = per_call(lambda: sum(1 for _ in iter(chunks)), iterations // 100)
            it_inst = per_call(
                lambda: sum(1 for _ in _tap_sync(iter(chunks), _ChatTap(meter, None, "m", True))),
                iterations // 100,
            )
            rows.append((inst - plain, (it_inst - it_plain) / 200))
    print(
        f"instrumentation alone (median of 7 x {iterations}): "
        f"{statistics.median(r[0] for r in rows):.2f} µs per non-streamed call "
        f"(5 token types recorded), {statistics.median(r[1] for r in rows) * 1000:.0f} ns "
        f"per streamed chunk"
    )


if __name__ == "__main__":
    main()
    isolated(20000)
    meterstream.shutdown(0)
