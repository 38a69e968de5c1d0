"""client_overhead: LangflowClient.stream against a bare requests loop reading the same stream.

A local server in another process streams 500 tokens in Langflow's wire format (one JSON
event per line). The bare loop does the least any client must: POST, iterate lines, decode
each JSON event, keep the token chunks, stop at ``end``. Both use a keep-alive session and
run alternately (ABBA), and both are timed from the call to the first token and to the end.

The server sends the events back to back, so the figures are all client overhead: a model
streams far slower. ``details`` also gives the CPU time each spends per stream (thread time),
which a busy machine disturbs much less than wall time. The same comparison with a 1 ms pause before each event (still faster than
any model) is reported in ``details`` as ``paced_1ms``.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from bench.context import Context
from bench.report import Figure
from bench.stream_server import QUESTION, SESSION_ID, TOKENS
from bench.timing import Stats
from chatbot.engine import Answer, Token
from chatbot.langflow import LangflowClient
from tests.replay_server import FLOW_ID

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 1.05
PACED = 0.001  # seconds before each event in the paced comparison


def run(ctx: Context) -> list[Figure]:
    with _server(0.0) as url:
        figures = _measure(ctx, url, pairs=60 if ctx.quick else 200)
    with _server(PACED) as url:
        paced = _measure(ctx, url, pairs=5 if ctx.quick else 15)
    for figure, slow in zip(figures, paced):
        figure.details["paced_1ms"] = {"ours_ms": round(slow.value, 2), "bare_ms": round(slow.baseline, 2),
                                       "median_of_pair_ratios": round(slow.ratio, 4)}  # fmt: skip
    return figures


@contextlib.contextmanager
def _server(delay: float) -> Iterator[str]:
    """``bench/stream_server.py`` in another process, so the server never competes for our GIL."""
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.stream_server", str(delay)], cwd=ROOT, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        yield server.stdout.readline().strip()
    finally:
        server.stdin.close()
        server.wait(timeout=10)


def _client_stream(client: LangflowClient) -> tuple[float, float, int]:
    started = time.perf_counter()
    first, tokens = None, 0
    for event in client.stream(QUESTION, session_id=SESSION_ID):
        if isinstance(event, Token):
            first = first or time.perf_counter()
            tokens += 1
        elif isinstance(event, Answer):
            break
    return first - started, time.perf_counter() - started, tokens


def _bare_stream(http: requests.Session, url: str) -> tuple[float, float, int]:
    started = time.perf_counter()
    first, chunks = None, []
    body = {"input_value": QUESTION, "input_type": "chat", "output_type": "chat", "session_id": SESSION_ID}
    with http.post(url, params={"stream": "true"}, json=body, stream=True, timeout=(5, 30)) as response:
        for line in response.iter_lines():
            if not line:
                continue
            event = json.loads(line)
            if event["event"] == "token":
                first = first or time.perf_counter()
                chunks.append(event["data"]["chunk"])
            elif event["event"] == "end":
                break
    return first - started, time.perf_counter() - started, len(chunks)


def _measure(ctx: Context, url: str, *, pairs: int) -> list[Figure]:
    client = LangflowClient(base_url=url, flow_id=FLOW_ID, api_key="bench-api-key", timeout=30)
    http = requests.Session()
    run_url = f"{url}/api/v1/run/{FLOW_ID}"

    def ours():
        return _client_stream(client)

    def bare():
        return _bare_stream(http, run_url)

    for _ in range(3):  # warm both connections and code paths
        ours(), bare()
    results: dict[str, list[tuple[float, float, int]]] = {"ours": [], "bare": []}
    cpu: dict[str, list[float]] = {"ours": [], "bare": []}
    for i in range(pairs):
        order = (("ours", ours), ("bare", bare)) if i % 2 == 0 else (("bare", bare), ("ours", ours))
        for name, call in order:
            started = time.thread_time()
            results[name].append(call())
            cpu[name].append(time.thread_time() - started)
    tokens = {name: {r[2] for r in runs} for name, runs in results.items()}
    if tokens != {"ours": {TOKENS}, "bare": {TOKENS}}:
        raise RuntimeError(f"expected {TOKENS} tokens in every run, got {tokens}")
    cpu_ms = {name: round(statistics.median(times) * 1000, 3) for name, times in cpu.items()}
    figures = []
    for index, (label, what) in enumerate((("ttft", "time to first token"), ("total", "total time"))):
        mine = Stats.of([r[index] for r in results["ours"]])
        theirs = Stats.of([r[index] for r in results["bare"]])
        # The rule's statistic: each pair shares the machine's state at that moment.
        ratio = statistics.median(a[index] / b[index] for a, b in zip(results["ours"], results["bare"]))
        ctx.log("client_overhead %s: %.2f ms vs bare %.2f ms (%.3f×, %d pairs)", label, mine.median * 1000,
                theirs.median * 1000, ratio, pairs)  # fmt: skip
        figures.append(Figure(
            name=f"client_overhead.{label}", value=mine.median * 1000, unit="ms",
            target=f"{what} ≤ {LIMIT:g} × bare requests loop (median of per-pair ratios)", met=ratio <= LIMIT,
            baseline=theirs.median * 1000, baseline_label="bare requests loop", paired_ratio=ratio,
            details={"pairs": pairs, "tokens": TOKENS, "ours_ms": mine.summary(digits=3),
                     "bare_ms": theirs.summary(digits=3), "ratio_of_medians": round(mine.median / theirs.median, 4),
                     "cpu_ms_per_stream": cpu_ms},
        ))  # fmt: skip
    return figures
