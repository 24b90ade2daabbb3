"""What token metering adds to an OpenAI / Anthropic call, beside the same call uninstrumented.

The responses are the fake model server's (meterstream.testing.llm), taken
from it once over HTTP and then replayed in process through an
``httpx.MockTransport``: the SDK does all of its client-side work (build
the request, parse the JSON or the server-sent events into its pydantic
types) and nothing else competes in the measured process. The figures are
``time.process_time`` (every thread: meterstream's delivery thread handing
the events to the memory exporter is counted, each timed loop ends with a
``flush()``) per call, medians over the rounds; each round times the plain
client and the instrumented one back to back.

With ``--compare SRC`` (another checkout's ``src``, such as main's) the
same measurements run in two child processes, one importing this
checkout's meterstream and one importing SRC's, their rounds alternating,
so both are measured in one run under the same load.

    python benchmarks/bench_llm.py [--rounds 7] [--calls 2000] [--compare ../main/src]
                                   [--exporter memory|none]

A script, not a test.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

HI = [{"role": "user", "content": "hello there"}]
CHUNKS = 200
LONG = " ".join(["tok"] * CHUNKS)  # one content chunk (event) per word
FIVE = "input=40,cached_input=12,cache_write=4,output=20,reasoning=6"
#: The responses replayed: name -> (path, request body, the fake's headers).
CAPTURED: dict[str, tuple[str, dict[str, Any], dict[str, str]]] = {
    "chat": ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": HI}, {}),
    "chat5": (
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "messages": HI},
        {"x-fake-tokens": FIVE},
    ),
    "chat_stream": (
        "/v1/chat/completions",
        {
            "model": "gpt-4o-mini",
            "messages": HI,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        {"x-fake-reply": LONG},
    ),
    "responses": ("/v1/responses", {"model": "gpt-5", "input": "hello"}, {}),
    "embeddings": ("/v1/embeddings", {"model": "e", "input": "hello"}, {}),
    "messages": (
        "/v1/messages",
        {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": HI},
        {},
    ),
    "messages_stream": (
        "/v1/messages",
        {"model": "claude-sonnet-4-5", "max_tokens": 1000, "messages": HI, "stream": True},
        {"x-fake-reply": LONG},
    ),
}


def capture(path: Path) -> None:
    """Ask the fake model server for each response once; keep the bytes in *path*."""
    import httpx

    from meterstream.testing.llm import FakeModelServer

    bodies: dict[str, dict[str, str]] = {}
    with FakeModelServer() as fake, httpx.Client() as http:
        for name, (route, body, headers) in CAPTURED.items():
            r = http.post(fake.url + route, json=body, headers={**headers, "x-api-key": "k"})
            r.raise_for_status()
            bodies[name] = {"type": r.headers["content-type"], "text": r.text}
    path.write_text(json.dumps(bodies), encoding="utf-8")


# -- a worker: one meterstream (the one on its sys.path), measured round by round -------------


def cpu_per_call(fn: Callable[[], Any], calls: int, flush: Callable[[], Any]) -> float:
    """Microseconds of process CPU per call, the delivery of what they recorded included."""
    gc.collect()
    start = time.process_time()
    for _ in range(calls):
        fn()
    flush()
    return (time.process_time() - start) / calls * 1e6


def _httpx_of(module: Any) -> Any:
    """The httpx module an SDK's base client uses."""
    return getattr(module, "httpx2", None) or module.httpx


def worker(bodies_path: str, exporter: str) -> None:
    warnings.simplefilter("ignore")
    import anthropic
    import anthropic._base_client
    import openai
    import openai._base_client
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    import meterstream
    from meterstream.integrations import anthropic as metered_anthropic
    from meterstream.integrations import openai as metered_openai
    from meterstream.integrations._llm.meter import TokenMeter
    from meterstream.integrations._llm.patch import _sync_post, _tap_sync
    from meterstream.integrations.openai import _begin_for, _ChatTap

    bodies = json.loads(Path(bodies_path).read_text(encoding="utf-8"))
    by_route: dict[tuple[str, bool], dict[str, dict[str, str]]] = {}
    for name, (route, body, _) in CAPTURED.items():
        by_route.setdefault((route, bool(body.get("stream"))), {})[name] = bodies[name]

    def transport(httpx: Any, which: dict[str, str]) -> Any:
        """Answers each route with the response captured for the case *which* names."""

        def handle(request: httpx.Request) -> httpx.Response:
            stream = b'"stream":true' in request.content.replace(b" ", b"")
            route = request.url.path
            answer = by_route[(route, stream)][which[route + ("+" if stream else "")]]
            return httpx.Response(
                200, headers={"content-type": answer["type"]}, content=answer["text"].encode()
            )

        return httpx.MockTransport(handle)

    meter = meterstream.configure(exporter=exporter, flush_interval=3600)
    clear = getattr(meter.exporter, "clear", lambda: None)

    def flush() -> None:
        meter.flush(30)
        clear()

    def clients(five: bool) -> tuple[Any, Any]:
        which = {
            "/v1/chat/completions": "chat5" if five else "chat",
            "/v1/chat/completions+": "chat_stream",
            "/v1/responses": "responses",
            "/v1/embeddings": "embeddings",
            "/v1/messages": "messages",
            "/v1/messages+": "messages_stream",
        }
        # Each SDK's own httpx (httpx, or httpx2 in the newest releases).
        ho, ha = _httpx_of(openai._base_client), _httpx_of(anthropic._base_client)
        http_o = ho.Client(transport=transport(ho, which))
        http_a = ha.Client(transport=transport(ha, which))
        o = openai.OpenAI(base_url="http://fake/v1", api_key="k", http_client=http_o)
        a = anthropic.Anthropic(base_url="http://fake", api_key="k", http_client=http_a)
        return o, a

    def cases(o: Any, a: Any, o5: Any) -> dict[str, Callable[[], Any]]:
        return {
            "openai chat (input, output)": lambda: o.chat.completions.create(
                model="gpt-4o-mini", messages=HI
            ),
            "openai chat (5 token types)": lambda: o5.chat.completions.create(
                model="gpt-4o-mini", messages=HI
            ),
            f"openai chat stream ({CHUNKS} chunks)": lambda: list(
                o.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True)
            ),
            "openai responses": lambda: o.responses.create(model="gpt-5", input="hello"),
            "openai embeddings": lambda: o.embeddings.create(model="e", input="hello"),
            "anthropic messages": lambda: a.messages.create(
                model="claude-sonnet-4-5", max_tokens=100, messages=HI
            ),
            f"anthropic stream ({CHUNKS} chunks)": lambda: list(
                a.messages.create(
                    model="claude-sonnet-4-5", max_tokens=1000, messages=HI, stream=True
                )
            ),
        }

    plain_o, plain_a = clients(False)
    plain_o5, _ = clients(True)
    inst_o, inst_a = clients(False)
    inst_o5, _ = clients(True)
    for c in (inst_o, inst_a, inst_o5):
        (metered_anthropic if c is inst_a else metered_openai).instrument(c)
    plain, inst = cases(plain_o, plain_a, plain_o5), cases(inst_o, inst_a, inst_o5)

    # The instrumentation alone: the _post wrapper around a _post that answers at
    # once with the SDK's own parsed ChatCompletion, and the tap over its chunks.
    def completion(five: bool) -> Any:
        text = bodies["chat5" if five else "chat"]["text"]
        return ChatCompletion.model_validate_json(text)

    chunks = [
        ChatCompletionChunk.model_validate_json(line[6:])
        for line in bodies["chat_stream"]["text"].splitlines()
        if line.startswith("data: {")
    ]
    chunks = [c for c in chunks if c.choices]  # the content chunks, as the caller sees them
    token_meter = TokenMeter(
        "openai", event_name="token-billing-tokens", customer=None, meter_client=None
    )
    body = {"model": "gpt-4o-mini", "messages": HI}
    stubs = {}
    for five in (False, True):
        response = completion(five)

        def stub(*args: Any, _r: Any = response, **kwargs: Any) -> Any:
            return _r

        stubs[five] = (stub, _sync_post(stub, _begin_for(token_meter, False), token_meter))
    dims = {"model": "openai/gpt-4o-mini", "token_type": "input"}
    raw = bodies["chat5"]["text"]

    def alone() -> dict[str, float]:
        n = 20000
        out = {}
        for five, label in ((False, "input, output"), (True, "5 token types")):
            stub, wrapped = stubs[five]
            p = cpu_per_call(lambda s=stub: s("/chat/completions", body=body, options={}), n, flush)
            i = cpu_per_call(
                lambda w=wrapped: w("/chat/completions", body=body, options={}), n, flush
            )
            out[f"instrumentation alone, chat ({label})"] = i - p
        it_plain = cpu_per_call(lambda: sum(1 for _ in iter(chunks)), n // 100, flush)
        it_inst = cpu_per_call(
            lambda: sum(1 for _ in _tap_sync(iter(chunks), _ChatTap(token_meter, None, "m", True))),
            n // 100,
            flush,
        )
        out["stream tap alone, per chunk"] = (it_inst - it_plain) / len(chunks)
        out["floor: one record_use()"] = cpu_per_call(
            lambda: meter.record_use("token-billing-tokens", 5, "cus_bench", None, dims, None),
            n,
            flush,
        )
        out["floor: the SDK parsing the response (model_validate_json)"] = cpu_per_call(
            lambda: ChatCompletion.model_validate_json(raw), n // 4, flush
        )
        return out

    print(json.dumps({"ready": True}), flush=True)
    with meterstream.customer("cus_bench"):
        for name in plain:  # warm up both
            cpu_per_call(plain[name], 20, flush)
            cpu_per_call(inst[name], 20, flush)
        for line in sys.stdin:
            calls = int(line)
            result: dict[str, Any] = {}
            for name in plain:
                n = max(10, calls // 10) if "chunks" in name else calls
                result[name] = (
                    cpu_per_call(plain[name], n, flush),
                    cpu_per_call(inst[name], n, flush),
                )
            result["alone"] = alone()
            print(json.dumps(result), flush=True)
    meterstream.shutdown(0)


# -- the parent: runs the workers, alternating, and prints the medians -------------------------


def _spawn(src: str, bodies: Path, exporter: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": src}
    child = subprocess.Popen(
        [sys.executable, __file__, "--worker", str(bodies), "--exporter", exporter],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    if "ready" not in json.loads(child.stdout.readline()):
        raise RuntimeError("the worker did not start")
    return child


def _round(child: subprocess.Popen[str], calls: int) -> dict[str, Any]:
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(f"{calls}\n")
    child.stdin.flush()
    result: dict[str, Any] = json.loads(child.stdout.readline())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--compare", metavar="SRC", help="another checkout's src directory")
    parser.add_argument(
        "--exporter",
        default="memory",
        choices=["memory", "none"],
        help="memory: the events are built as wire dicts and kept; none: discarded unencoded",
    )
    parser.add_argument("--worker", metavar="BODIES", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.exporter)
        return
    here = str(Path(__file__).resolve().parent.parent / "src")
    trees = {"this": here}
    if args.compare:
        trees["compared"] = str(Path(args.compare).resolve())
    start_load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        bodies = Path(tmp) / "bodies.json"
        capture(bodies)
        children = {name: _spawn(src, bodies, args.exporter) for name, src in trees.items()}
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        try:
            for _ in range(args.rounds):
                for name, child in children.items():
                    rounds[name].append(_round(child, args.calls))
        finally:
            for child in children.values():
                assert child.stdin is not None
                child.stdin.close()
                child.wait(60)
    load = os.getloadavg()
    print(
        f"load average {start_load:.2f} at the start, {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
        f"at the end; {args.rounds} rounds of "
        f"{args.calls} calls; exporter={args.exporter}"
    )
    for name, src in trees.items():
        print(f"\n== {name}: {src}")
        _report(rounds[name])


def _report(rounds: list[dict[str, Any]]) -> None:
    print(f"{'call':36} {'plain µs':>10} {'metered µs':>11} {'added µs':>9} {'added %':>8}")
    for name in rounds[0]:
        if name == "alone":
            continue
        plain = statistics.median(r[name][0] for r in rounds)
        metered = statistics.median(r[name][1] for r in rounds)
        added = statistics.median(r[name][1] - r[name][0] for r in rounds)
        line = f"{name:36} {plain:10.1f} {metered:11.1f} {added:9.1f} {added / plain * 100:7.1f}%"
        if "chunks" in name:
            line += f"   ({added / CHUNKS:.2f} µs per chunk, the call's own share included)"
        print(line)
    for name in rounds[0]["alone"]:
        values = [r["alone"][name] for r in rounds]
        unit = "ns" if "per chunk" in name else "µs"
        scale = 1000 if unit == "ns" else 1
        print(
            f"{name:62} {statistics.median(values) * scale:8.2f} {unit}"
            f"  (min {min(values) * scale:.2f}, max {max(values) * scale:.2f})"
        )


if __name__ == "__main__":
    main()
