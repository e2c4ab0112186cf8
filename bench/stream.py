"""Streamed chat completions: what ragward adds to a stream, side by side with LiteLLM.

Every part runs as its own process on 127.0.0.1, started and stopped here:

* a fake OpenAI upstream (``tests/openai_server.py``'s stub, in its own process
  on uvloop): ``POST /v1/chat/completions`` with ``stream: true`` answers a role
  chunk, then ``--chunks`` ``chat.completion.chunk`` content chunks one word each,
  ``--chunk-interval-ms`` apart (a fixed rate), the ``finish_reason`` chunk, the
  usage chunk (``choices: []``, asked with ``stream_options.include_usage``),
  ``data: [DONE]``; ``POST /v1/embeddings`` for ragward's retrieval. The answer
  carries an e-mail address and a phone number, so redaction has work to do;
* (1) **upstream** — called directly: the baseline;
* **rag-core** — ``ragward rag-core``'s own NDJSON stream (``POST /v1/chat/stream``),
  no gateway: splits what ragward adds into its RAG part and its gateway part;
* (2) **ragward** — the deployed shape (docker-compose.yml): ``ragward gateway``
  (HS256 JWT, Redis quota and cache — every question unique, so a miss — PII
  redaction of the conversation and of the stream, audit events made durable on
  Kafka before the status line and before ``[DONE]``) in front of ``ragward
  rag-core`` with the ``openai`` backend pointed at the fake upstream
  (``OPENAI_BASE_URL``): the real path, retrieval included — one embedding call
  and a vector search per question, then LlamaIndex streaming from the upstream,
  NDJSON to the gateway, SSE to the client. Its CPU is both processes';
* (3) **litellm** — LiteLLM's proxy (``bench/.venv-litellm``, 1.108.7, one worker,
  master key, no DB) streaming the same upstream.

Loads, target by target within each: a warm-up at ``--concurrency``; then
**time to first token** unloaded (one stream at a time, ``--ttft-streams``),
from the request's send to the first non-empty ``delta.content`` (and to the
first byte of the body); then **throughput** closed loop at ``--concurrency``
for ``--duration`` s: streams/s, and CPU of the proxy's processes (from /proc)
per upstream chunk streamed through and per stream; then the same with streams
``--long-factor`` times longer (``max_tokens``), so that the difference gives
the marginal CPU of one more chunk apart from each request's fixed work. The
client is its own process (aiohttp on uvloop). Printed: the table, the targets
of issue 17 with MET / MISSED, and a chart in bench/out/ when matplotlib is
installed. Bounded: every phase by its stream count or duration, every stream
by 30 s, every client process by its phase plus 90 s.

    .venv/bin/python -m bench.stream            # ~5 min on a busy 2-core machine
    .venv/bin/python -m bench.stream --quick    # ~3 min, fewer and shorter phases
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from bench import harness

say = harness.say
REPO, OUT, PY = harness.REPO, harness.OUT, harness.PY

QUESTION = "how many days of annual leave do I get?"
# The upstream's answer: words, each one chunk; PII in the middle (never in the first
# chunk), raw in what the upstream sends, a placeholder in what ragward may send.
EMAIL, PHONE = "jane.doe@example.com", "+1-415-555-0134"
SENTENCE = ("Employees get fifteen days of annual leave each year and may carry five of "
            "them into the next year if their manager agrees in writing")
INTERNAL_TOKEN = "bench-internal-token-0123456789abcdef"  # noqa: S105 (bench only)
TARGETS = {"added_ttft_p50_ms": 2.0, "cpu_ms_per_chunk": 0.05, "throughput_vs_litellm": 10.0}


def answer_text(words: int) -> str:
    """``words`` words (one chunk each): the sentence over and over, an e-mail address and
    a phone number in every 20 words (never the first)."""
    vocabulary = SENTENCE.split()
    pii = {7: EMAIL, 14: PHONE}
    return " ".join(pii.get(i % 20, vocabulary[i % len(vocabulary)]) for i in range(words))


def chat_body(model: str, max_tokens: int, wire: str = "sse") -> str:
    """A streamed chat request as gateway.py's printf format: (prefix, counter).

    ``max_tokens`` sets the stream's length: the stub cuts its answer to that many
    words (ragward forwards it through rag-core, LiteLLM as it is). ``wire="ndjson"``
    is rag-core's own ``POST /v1/chat/stream`` request (always streamed)."""
    messages = [{"role": "user", "content": "%s-%d: " + QUESTION}]
    if wire == "ndjson":
        return json.dumps({"messages": messages, "index": model, "max_tokens": max_tokens})
    return json.dumps({
        "model": model, "stream": True, "stream_options": {"include_usage": True},
        "max_tokens": max_tokens, "messages": messages,
    })


def read_sse(line: bytes) -> tuple[str, str]:
    """(kind, text) of one line of OpenAI's stream: kind "text", "done", "error" or ""."""
    if not line.startswith(b"data: "):
        return "", ""  # blank separators, ": keep-alive"
    payload = line[6:].strip()
    if payload == b"[DONE]":
        return "done", ""
    event = msgspec.json.decode(payload)
    if "error" in event:
        return "error", str(event["error"].get("code") or "error event")
    return "text", "".join((c.get("delta") or {}).get("content") or ""
                           for c in event.get("choices") or ())


def read_ndjson(line: bytes) -> tuple[str, str]:
    """The same for rag-core's NDJSON chat events (rag_core.schemas)."""
    if not line.strip():
        return "", ""
    event = msgspec.json.decode(line)
    kind = event.get("type")
    if kind == "delta":
        return "text", str(event["text"])
    if kind == "error":
        return "error", str(event.get("code") or "error event")
    return ("done", "") if kind == "end" else ("", "")


# ------------------------------------------------------------------ the fake upstream


def upstream_entry(raw: str) -> int:
    """The OpenAI stub of the tests, on uvloop, until SIGTERM."""
    import threading

    import uvloop

    from tests.openai_server import OpenAIStub

    spec = json.loads(raw)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())  # the stub's thread loop
    stub = OpenAIStub(port=int(spec["port"]))
    stub.stream_delay_s = float(spec["interval_ms"]) / 1000  # before each content chunk
    stub.answer_text = spec["answer"]
    stub.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(5):
        stub.clear()  # nothing here reads the stub's request log: keep it from growing
    stub.stop()
    return 0


# ------------------------------------------------------------------ the client


async def _client_main(spec: dict[str, Any]) -> dict[str, Any]:
    """Closed loop: ``concurrency`` streams at a time until ``max_streams`` or ``seconds``.

    Per stream: time to the first body byte, to the first non-empty
    ``delta.content``, to the end; content chunks received; whether it ended with
    ``[DONE]``; whether any raw PII string reached the client.
    """
    import aiohttp

    clock = time.perf_counter
    read = read_ndjson if spec["wire"] == "ndjson" else read_sse
    url, headers, body, prefix = spec["url"], spec["headers"], spec["body"], spec["prefix"]
    concurrency, limit = int(spec["concurrency"]), int(spec["max_streams"])
    raw_pii = [s.encode() for s in spec["raw_pii"]]
    streams: list[dict[str, Any]] = []
    started = 0

    async def one(session: aiohttp.ClientSession, i: int) -> dict[str, Any]:
        t0 = clock()
        first_byte = first_text = None
        pieces, status, done, error = 0, -1, False, ""
        text = bytearray()
        try:
            async with session.post(url, data=(body % (prefix, i)).encode(),
                                    headers=headers) as response:
                status = response.status
                async for line in response.content:
                    if first_byte is None:
                        first_byte = clock()
                    kind, content = read(line)
                    if kind == "done":
                        done = True
                        break
                    if kind == "error":
                        error = content
                        break
                    if content:
                        if first_text is None:
                            first_text = clock()
                        pieces += 1
                        text += content.encode()
        except Exception as exc:
            error = type(exc).__name__
        end = clock()
        return {"ok": status == 200 and done and not error, "status": status, "error": error,
                "ttfb_ms": (first_byte - t0) * 1000 if first_byte else None,
                "ttft_ms": (first_text - t0) * 1000 if first_text else None,
                "total_ms": (end - t0) * 1000, "pieces": pieces,
                "raw_pii": any(s in text for s in raw_pii), "end": end}

    connector = aiohttp.TCPConnector(limit=concurrency + 4)
    timeout = aiohttp.ClientTimeout(total=float(spec["stream_timeout_s"]))
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        t0 = clock()
        deadline = t0 + float(spec["seconds"])

        async def worker() -> None:
            nonlocal started
            while started < limit and clock() < deadline:
                started += 1
                streams.append(await one(session, started))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    span = max((s["end"] for s in streams), default=t0) - t0
    return {"streams": streams, "seconds": span}


def client_entry(raw: str) -> int:
    import uvloop

    spec = json.loads(raw)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(_client_main(spec))
    # to a file, not stdout: the event loop may leave stdout non-blocking, and a result
    # over the pipe's 64 KiB was cut short
    Path(spec["out"]).write_text(json.dumps(result))
    return 0


# ------------------------------------------------------------------ measuring


@dataclass
class Phase:
    target: str
    load: str
    seconds: float
    ok: int
    failed: int
    streams_per_s: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    ttfb_p50_ms: float
    total_p50_ms: float
    pieces_per_stream: float
    cpu_ms_per_stream: float
    cpu_ms_per_chunk: float
    extra_cpu_ms_per_stream: dict[str, float]
    raw_pii_streams: int
    cpu_ms_per_stream_by_process: dict[str, float]
    other_cores: float
    load1: float
    errors: dict[str, int] = field(default_factory=dict)
    added_ttft_p50_ms: float | None = None
    added_ttft_p99_ms: float | None = None


@dataclass
class StreamTarget:
    """A gateway.py Target (its ``body`` unused), the model to ask for, and which of
    its extra processes are the proxy's own (rag-core is part of ragward; Redis and
    Kafka are services, reported apart)."""

    target: Any  # bench_gateway.Target
    model: str  # ragward: the index; rag-core (wire "ndjson"): the index too
    own_extra: tuple[str, ...] = ()
    process: str = ""  # what its main process is called in the CPU split (default: name)
    wire: str = "sse"  # "sse": OpenAI's chat completions; "ndjson": rag-core's chat stream


def run_client(t: StreamTarget, *, chunks: int, concurrency: int, max_streams: int,
               seconds: float) -> dict[str, Any]:
    spec = {"url": t.target.url, "body": chat_body(t.model, chunks, t.wire),
            "wire": t.wire, "prefix": harness.unique_prefix(),
            "headers": {"Content-Type": "application/json", **t.target.headers},
            "concurrency": concurrency, "max_streams": max_streams, "seconds": seconds,
            "stream_timeout_s": 30.0, "raw_pii": [EMAIL, PHONE]}
    with tempfile.TemporaryDirectory(prefix="ragward-stream-client-") as scratch:
        spec["out"] = str(Path(scratch) / "result.json")
        out = subprocess.run(harness.module_command("stream", "--client", json.dumps(spec)),
                             cwd=REPO, capture_output=True,
                             text=True, check=False, timeout=seconds + 90)
        if out.returncode != 0:
            raise SystemExit(f"stream client failed:\n{out.stderr[-2000:]}")
        data: dict[str, Any] = json.loads(Path(spec["out"]).read_text())
    return data


def measure(t: StreamTarget, load: str, *, concurrency: int, max_streams: int,
            seconds: float, chunks: int, upstream_pid: int, all_pids: list[int]) -> Phase:
    target = t.target
    harness.wait_quiet(target.pid)
    say(f"  {target.name:8} {load:>12} ...")
    with harness.Meter(target, upstream_pid, all_pids) as m:
        result = run_client(t, chunks=chunks, concurrency=concurrency,
                            max_streams=max_streams, seconds=seconds)
    streams = result["streams"]
    good = [s for s in streams if s["ok"]]
    errors: dict[str, int] = {}
    for s in streams:
        if not s["ok"]:
            key = s["error"] or (f"HTTP {s['status']}" if s["status"] != 200 else "no [DONE]")
            errors[key] = errors.get(key, 0) + 1

    def pct(key: str, q: float) -> float:
        return float(harness.percentile(sorted(s[key] for s in good if s[key] is not None), q))

    own = m.d_proxy + sum(m.d_extra[k] for k in t.own_extra)
    phase = Phase(
        target=target.name, load=load, seconds=round(result["seconds"], 2), ok=len(good),
        failed=len(streams) - len(good),
        streams_per_s=len(good) / result["seconds"] if result["seconds"] else 0.0,
        ttft_p50_ms=pct("ttft_ms", 0.5), ttft_p99_ms=pct("ttft_ms", 0.99),
        ttfb_p50_ms=pct("ttfb_ms", 0.5), total_p50_ms=pct("total_ms", 0.5),
        pieces_per_stream=sum(s["pieces"] for s in good) / len(good) if good else 0.0,
        cpu_ms_per_stream=m.per_request(own, len(good)),
        cpu_ms_per_chunk=m.per_request(own, len(good) * chunks),
        extra_cpu_ms_per_stream={k: m.per_request(v, len(good)) for k, v in m.d_extra.items()
                                 if k not in t.own_extra},
        raw_pii_streams=sum(1 for s in good if s["raw_pii"]),
        cpu_ms_per_stream_by_process={
            t.process or target.name: m.per_request(m.d_proxy, len(good)),
            **{k: m.per_request(m.d_extra[k], len(good)) for k in t.own_extra}},
        other_cores=m.other_cores, load1=m.load1, errors=errors,
    )
    say(f"  {target.name:8} {load:>12}: {phase.ok} streams ({phase.failed} failed) "
        f"{phase.streams_per_s:7.1f}/s  TTFT p50 {phase.ttft_p50_ms:7.2f} p99 "
        f"{phase.ttft_p99_ms:7.2f} ms  CPU {phase.cpu_ms_per_stream:6.2f} ms/stream "
        f"{phase.cpu_ms_per_chunk:6.3f} ms/chunk  others {phase.other_cores:.2f} cores"
        + (f"  errors {errors}" if errors else ""))
    return phase


# ------------------------------------------------------------------ report


def _check(out: list[str], label: str, value: float | None, goal: str, met: bool) -> None:
    shown = "-" if value is None or value != value else f"{value:,.3f}"
    out.append(f"  {label:64} {shown:>10}   target {goal:8} {'MET' if met else 'MISSED'}")


def report(phases: list[Phase], args: argparse.Namespace, notes: list[str]) -> list[str]:
    by = {(p.target, p.load): p for p in phases}
    for p in phases:
        base = by.get(("upstream", p.load))
        if base and p.target != "upstream":
            p.added_ttft_p50_ms = p.ttft_p50_ms - base.ttft_p50_ms
            p.added_ttft_p99_ms = p.ttft_p99_ms - base.ttft_p99_ms
    f = harness.fmt
    out = [f"Streamed chat completions ({args.code_version}): {args.chunks} chunks "
           f"{args.chunk_interval_ms:g} ms apart per stream; throughput at "
           f"c={args.concurrency}{' (--quick)' if args.quick else ''}", ""]
    head = (f"{'target':9} {'load':>12} {'streams':>7} {'fail':>4} {'str/s':>7} "
            f"{'TTFT p50':>8} {'p99':>8} {'+p50':>7} {'+p99':>7} {'TTFB p50':>8} "
            f"{'total p50':>9} {'pieces':>6} {'CPU/str':>7} {'CPU/chunk':>9} "
            f"{'+Redis':>6} {'+Kafka':>6} {'rawPII':>6} {'others':>6}")
    out += [head, "-" * len(head)]
    for p in phases:
        extra = p.extra_cpu_ms_per_stream
        out.append(
            f"{p.target:9} {p.load:>12} {p.ok:7d} {p.failed:4d} {f(p.streams_per_s, 7, 1)} "
            f"{f(p.ttft_p50_ms, 8)} {f(p.ttft_p99_ms, 8)} {f(p.added_ttft_p50_ms)} "
            f"{f(p.added_ttft_p99_ms)} {f(p.ttfb_p50_ms, 8)} {f(p.total_p50_ms, 9)} "
            f"{f(p.pieces_per_stream, 6, 1)} {f(p.cpu_ms_per_stream, 7)} "
            f"{f(p.cpu_ms_per_chunk, 9, 4)} {f(extra.get('redis'), 6)} "
            f"{f(extra.get('kafka'), 6)} {p.raw_pii_streams:6d} {p.other_cores:6.2f}")
    out += ["", "Columns: TTFT = send -> first non-empty delta.content; TTFB = send -> first "
            "body byte (ragward: its role chunk); +p50/+p99 = minus the upstream's at the same "
            "load; pieces = content chunks the client got per stream; CPU/str, CPU/chunk = "
            "user+system CPU (ms) of the proxy's processes (ragward: gateway + rag-core) per "
            "completed stream and per upstream chunk streamed through (pieces of the upstream "
            "= --chunks per stream); +Redis/+Kafka = their servers' CPU per stream; rawPII = "
            "streams in which a raw e-mail or phone number of the answer reached the client "
            "(all of them for the upstream and LiteLLM, which redact nothing); "
            "one at a time (ttft c=1), CPU per stream includes the processes' idle background "
            "work spread over few streams: read CPU in the c= phases; "
            "others = cores busy with processes outside this benchmark (noise).", "",
            "Targets (issue 17):"]
    ttft = by.get(("ragward", "ttft c=1"))
    load, long_load = f"c={args.concurrency}", f"c={args.concurrency} x{args.long_factor}"
    rw, ll = by.get(("ragward", load)), by.get(("litellm", load))
    goal_ttft, goal_cpu = TARGETS["added_ttft_p50_ms"], TARGETS["cpu_ms_per_chunk"]
    goal_ratio = TARGETS["throughput_vs_litellm"]
    if ttft is not None and ttft.added_ttft_p50_ms is not None:
        _check(out, "added time to first token p50, unloaded (ms)", ttft.added_ttft_p50_ms,
               f"<= {goal_ttft:g}", ttft.added_ttft_p50_ms <= goal_ttft)
        out.append(f"  {'added time to first token p99, unloaded (ms)':64} "
                   f"{ttft.added_ttft_p99_ms or float('nan'):>10,.3f}   (info)")
        direct = by.get(("upstream", "ttft c=1"))
        if direct is not None:
            out.append(f"  {'  added time to first byte p50 (ragward: its role chunk) (ms)':64} "
                       f"{ttft.ttfb_p50_ms - direct.ttfb_p50_ms:>10,.3f}   (info)")
        rag = by.get(("rag-core", "ttft c=1"))
        if rag is not None and rag.added_ttft_p50_ms is not None:
            out.append(f"  {'  of the p50: rag-core direct (retrieval, LlamaIndex) (ms)':64} "
                       f"{rag.added_ttft_p50_ms:>10,.3f}   (info)")
            out.append(f"  {'  of the p50: the gateway (ragward - rag-core direct) (ms)':64} "
                       f"{ttft.ttft_p50_ms - rag.ttft_p50_ms:>10,.3f}   (info)")
    if rw is not None:
        _check(out, f"ragward CPU per chunk, all-in (CPU / chunks), {load} (ms)",
               rw.cpu_ms_per_chunk, f"<= {goal_cpu:g}", rw.cpu_ms_per_chunk <= goal_cpu)
    for name in ("ragward", "rag-core", "litellm"):
        short, long = by.get((name, load)), by.get((name, long_load))
        if short is None or long is None:
            continue
        # (CPU of a long stream - CPU of a short one) / the extra chunks: the cost of
        # streaming itself, without the per-request work (auth, quota, retrieval, audit).
        extra_chunks = args.chunks * (args.long_factor - 1)
        marginal = (long.cpu_ms_per_stream - short.cpu_ms_per_stream) / extra_chunks
        fixed = short.cpu_ms_per_stream - marginal * args.chunks
        label = f"{name} CPU per extra chunk (marginal, {load} vs {long_load}) (ms)"
        if name == "ragward":
            _check(out, label, marginal, f"<= {goal_cpu:g}", marginal <= goal_cpu)
        else:
            out.append(f"  {label:64} {marginal:>10,.4f}   (info)")
        out.append(f"  {'  so per stream, before its chunks (ms)':64} {fixed:>10,.3f}   (info)")
        for process, ms in short.cpu_ms_per_stream_by_process.items():
            if len(short.cpu_ms_per_stream_by_process) > 1:
                each = (long.cpu_ms_per_stream_by_process[process] - ms) / extra_chunks
                out.append(f"  {f'    of which {process} per extra chunk (ms)':64} "
                           f"{each:>10,.4f}   (info)")
    if ll is not None:
        out.append(f"  {f'LiteLLM CPU per chunk, all-in, no guardrail, {load} (ms)':64} "
                   f"{ll.cpu_ms_per_chunk:>10,.3f}   (info)")
    if rw is not None and ll is not None and ll.streams_per_s > 0:
        ratio = rw.streams_per_s / ll.streams_per_s
        _check(out, f"streams/s per worker ragward / LiteLLM at {load}", ratio,
               f">= {goal_ratio:g}", ratio >= goal_ratio)
        if rw.cpu_ms_per_stream > 0 and ll.cpu_ms_per_stream > 0:
            capacity = ll.cpu_ms_per_stream / rw.cpu_ms_per_stream
            _check(out, "  per-core capacity ragward / LiteLLM (by CPU per stream)", capacity,
                   f">= {goal_ratio:g}", capacity >= goal_ratio)
    split = [f"{p.target} {p.load}: " + ", ".join(
        f"{k} {v:.2f}" for k, v in p.cpu_ms_per_stream_by_process.items())
        for p in phases if len(p.cpu_ms_per_stream_by_process) > 1]
    if split:
        out += ["", "CPU ms per stream by process:"] + [f"  {line}" for line in split]
    out += ["", "Notes:"] + [f"  - {n}" for n in notes]
    return out


def chart(phases: list[Phase], path: Path) -> str:
    """TTFT p50/p99 unloaded and streams/s at the fixed concurrency, one bar per target."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ("chart skipped: matplotlib is not installed in this venv (not one of "
                "ragward's dependencies; not added)")
    ttft = [p for p in phases if p.load == "ttft c=1"]
    load = [p for p in phases if p.load.startswith("c=") and " x" not in p.load]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    xs = range(len(ttft))
    left.bar([x - 0.2 for x in xs], [p.ttft_p50_ms for p in ttft], 0.4, label="p50")
    left.bar([x + 0.2 for x in xs], [p.ttft_p99_ms for p in ttft], 0.4, label="p99")
    left.set_xticks(list(xs), [p.target for p in ttft])
    left.set_ylabel("ms")
    left.set_title("time to first token, one stream at a time")
    left.legend()
    right.bar([p.target for p in load], [p.streams_per_s for p in load])
    right.set_ylabel("streams/s (one worker)")
    right.set_title(f"throughput at {load[0].load}" if load else "throughput")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"chart: {path.relative_to(REPO)}"


# ------------------------------------------------------------------ main


def _redaction_kind() -> str:
    from gateway.pii import RedactionSession

    if hasattr(RedactionSession, "stream"):
        return "incremental (RedactionSession.stream)"
    return ("HoldAll fallback (gateway/_stream_redaction_fallback.py: RedactionSession has no "
            "stream() on this branch, so the whole answer is held until the upstream ends)")


def signing_settings(directory: Path, kid: str) -> dict[str, str]:
    """A new event-signing pair as gateway settings (the key set for verifiers included)."""
    from telemetry.event_keys import new_key_env

    return {name.removeprefix("RAGWARD_").lower(): value
            for name, value in new_key_env(directory, kid).items()}


def start_ragward(procs: Any, workdir: Path, upstream_api: str, redis: Any,
                  kafka: Any, *, config: Path | None = None,
                  **gateway: object) -> tuple[str, str, Any, Any]:
    """Index the bundled handbook through the fake upstream's embeddings, then rag-core
    (openai backend) and the gateway in front of it (``config``: its TOML file; ``gateway``:
    more of its settings). Returns both URLs, both processes."""
    if kafka is not None and "event_signing_key_file" not in gateway:
        # a gateway on Kafka signs every event (`ragward gateway` refuses to start without)
        gateway = {**signing_settings(workdir / "keys", "bench-stream"), **gateway}
    ports = {k: harness.free_port() for k in ("gateway", "rag_core")}
    rag_env = harness.child_env(
        OPENAI_BASE_URL=upstream_api,
        **harness.ragward_env(llm="openai", host="127.0.0.1", data_dir=workdir / "rag-data",
                              log_level="warning",
                              # as deployed: rag-core trusts the gateway only
                              internal_token=INTERNAL_TOKEN))
    ragward_bin = str(Path(PY).parent / "ragward")
    say("indexing the sample handbook with the openai backend (the fake upstream embeds)")
    ingest = subprocess.run([ragward_bin, "ingest", "--sample"], env=rag_env, cwd=REPO,
                            capture_output=True, text=True, check=False, timeout=300)
    if ingest.returncode != 0:
        raise SystemExit(f"ragward ingest failed:\n{(ingest.stdout + ingest.stderr)[-2000:]}")
    rag_core = procs.spawn("rag-core", [ragward_bin, "rag-core", "--port",
                                        str(ports["rag_core"])], rag_env)
    gw_env = harness.gateway_env(
        rag_core_url=f"http://127.0.0.1:{ports['rag_core']}", port=ports["gateway"],
        data_dir=workdir / "gateway-data", redis_url=redis.address,
        kafka_bootstrap=kafka.address if kafka is not None else None,
        internal_token=INTERNAL_TOKEN, **gateway)
    config_args = ["--config", str(config)] if config is not None else []
    gateway_proc = procs.spawn("gateway", [ragward_bin, *config_args, "gateway", "--port",
                                           str(ports["gateway"])], gw_env)
    harness.wait_ready("rag-core", rag_core, f"http://127.0.0.1:{ports['rag_core']}/ready", 300,
                  workdir)
    harness.wait_ready("gateway", gateway_proc, f"http://127.0.0.1:{ports['gateway']}/health",
                       180, workdir)
    return (f"http://127.0.0.1:{ports['gateway']}", f"http://127.0.0.1:{ports['rag_core']}",
            gateway_proc, rag_core)


def run(args: argparse.Namespace) -> int:
    OUT.mkdir(exist_ok=True)
    wanted = {"upstream", *args.targets.split(",")}
    litellm = harness.ensure_litellm() if "litellm" in wanted else None
    workdir = Path(tempfile.mkdtemp(prefix="ragward-stream-bench-"))
    procs = harness.Processes(workdir)
    notes = [f"stream redaction in the gateway: {_redaction_kind()}"]
    phases: list[Phase] = []
    from ragward import devservices

    args.code_version = harness.code_version()
    try:
        say(f"measuring {args.code_version}; logs in {workdir}; load average now "
            f"{harness.load1():.2f}")
        port = harness.free_port()
        upstream_url = f"http://127.0.0.1:{port}"
        upstream_spec = {"port": port, "interval_ms": args.chunk_interval_ms,
                         "answer": answer_text(args.chunks * args.long_factor)}
        upstream = procs.spawn("upstream", harness.module_command(
            "stream", "--serve-upstream", json.dumps(upstream_spec)), harness.child_env())
        litellm_proc = None
        if litellm is not None:
            say("starting LiteLLM's proxy (~20 s), Redis and Kafka meanwhile")
            litellm_port = harness.free_port()
            litellm_proc = harness.spawn_litellm(procs, litellm, litellm_port, upstream_url + "/v1")
        redis = devservices.start_redis()
        procs.services.append(redis)
        kafka = None if args.no_kafka else harness.start_kafka(procs, notes)
        if args.no_kafka:
            notes.append("--no-kafka: ragward ran on the in-process bus (no Kafka acks)")
        # 405 to a GET: the stub is up (it has no health route).
        harness.wait_ready("upstream", upstream, upstream_url + "/v1/chat/completions", 15, workdir)

        targets: list[StreamTarget] = [StreamTarget(harness.Target(
            "upstream", upstream_url + "/v1/chat/completions", "", {}, upstream.pid),
            "bench-model")]
        gateway = rag_core = None
        base = rag_base = ""
        if wanted & {"ragward", "rag-core"}:
            base, rag_base, gateway, rag_core = start_ragward(
                procs, workdir, upstream_url + "/v1", redis, kafka)
        if "rag-core" in wanted and rag_core is not None:  # RAG alone: no gateway controls
            targets.append(StreamTarget(harness.Target(
                "rag-core", rag_base + "/v1/chat/stream", "",
                {"X-Internal-Token": INTERNAL_TOKEN}, rag_core.pid), "default",
                wire="ndjson"))
        if "ragward" in wanted and gateway is not None and rag_core is not None:
            from ragward.settings import load_settings
            from ragward.tokens import mint

            token = mint(load_settings(jwt_secret=harness.SECRET, data_dir=workdir), "bench", "t1",
                         ["reader"], ttl=3600)
            services = {"redis": redis.pid, **({"kafka": kafka.pid} if kafka else {})}
            targets.append(StreamTarget(harness.Target(
                "ragward", base + "/v1/chat/completions", "",
                {"Authorization": f"Bearer {token}"}, gateway.pid,
                {"rag-core": rag_core.pid, **services}), "default", own_extra=("rag-core",),
                process="gateway"))
        if litellm_proc is not None:
            harness.wait_ready("litellm", litellm_proc,
                          f"http://127.0.0.1:{litellm_port}/health/liveliness", 120, workdir)
            targets.append(StreamTarget(harness.Target(
                "litellm", f"http://127.0.0.1:{litellm_port}/v1/chat/completions",
                "", {"Authorization": f"Bearer {harness.MASTER_KEY}"}, litellm_proc.pid),
                "bench-model"))
        upstream_pid = upstream.pid
        all_pids = [t.target.pid for t in targets] + [s.pid for s in procs.services] + (
            [rag_core.pid] if rag_core is not None else [])
        for t in targets:  # one stream each: a whole stream, [DONE] at the end
            smoke = run_client(t, chunks=args.chunks, concurrency=1, max_streams=1,
                               seconds=30)
            first = smoke["streams"][0] if smoke["streams"] else {}
            if not first.get("ok"):
                raise SystemExit(f"{t.target.name}: the smoke stream failed: {first}")
            notes.append(f"{t.target.name} smoke stream: {first['pieces']} content chunks, "
                         f"TTFT {first['ttft_ms'] or float('nan'):.1f} ms, total {first['total_ms']:.1f} ms, "
                         f"raw PII reached the client: {first['raw_pii']}")
        say(f"all up; load average {harness.load1():.2f}. Warming up")
        for t in targets:  # pools grown, first-call paths, JIT of the broker
            run_client(t, chunks=args.chunks, concurrency=args.concurrency,
                       max_streams=100_000, seconds=args.warmup)
        say("time to first token, one stream at a time")
        for t in targets:
            phases.append(measure(t, "ttft c=1", concurrency=1, max_streams=args.ttft_streams,
                                  seconds=args.ttft_streams * 2.0, chunks=args.chunks,
                                  upstream_pid=upstream_pid, all_pids=all_pids))
        for factor in sorted({1, args.long_factor}):  # x1 then the longer streams
            label = f"c={args.concurrency}" + (f" x{factor}" if factor > 1 else "")
            say(f"throughput at c={args.concurrency}, {args.chunks * factor} chunks a stream")
            for t in targets:
                phases.append(measure(t, label, concurrency=args.concurrency,
                                      max_streams=1_000_000, seconds=args.duration,
                                      chunks=args.chunks * factor, upstream_pid=upstream_pid,
                                      all_pids=all_pids))
        if gateway is not None and kafka is not None:
            audited = asyncio.run(harness.kafka_record_count(
                kafka.address, harness.default_setting("topic_audit")))
            served = sum(p.ok + p.failed for p in phases if p.target == "ragward")
            notes.append(f"Kafka audit topic holds {audited} records after {served} measured "
                         "ragward streams (+ smoke and warm-up; two per stream: the opening "
                         "and the closing one)")
        notes.append(f"ragward = ragward gateway (1 worker) + ragward rag-core (1 worker, "
                     f"openai backend, OPENAI_BASE_URL={upstream_url}/v1); LiteLLM "
                     f"{harness.LITELLM_PIN}, 1 worker, default logging; its CPU is one process's")
        notes.append("ragward does RAG on every question (an embedding call to the upstream "
                     "and a vector search before the LLM call); LiteLLM only proxies. Both "
                     "TTFT and CPU include that")
    finally:
        harness.stop_and_keep_logs(procs, workdir, OUT / "logs-stream")

    notes.append(chart(phases, OUT / "stream.png"))
    lines = report(phases, args, notes)
    print("\n".join(lines), flush=True)
    (OUT / "stream.txt").write_text("\n".join(lines) + "\n")
    (OUT / "stream.json").write_text(json.dumps(
        {"chunks": args.chunks, "chunk_interval_ms": args.chunk_interval_ms,
         "concurrency": args.concurrency, "phases": [asdict(p) for p in phases],
         "notes": notes}, indent=2))
    say(f"done; results in {OUT.relative_to(REPO)}/stream.txt and stream.json")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="short run: --ttft-streams 30 --duration 4 --warmup 1.5")
    parser.add_argument("--chunks", type=int, default=40,
                        help="content chunks per upstream stream (default 40)")
    parser.add_argument("--long-factor", type=int, default=4,
                        help="a second throughput phase with streams this many times longer, "
                             "for the marginal CPU per chunk (default 4; 1 = none)")
    parser.add_argument("--chunk-interval-ms", type=float, default=5.0,
                        help="the upstream's pause before each chunk (default 5)")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="streams in flight in the throughput phase (default 32)")
    parser.add_argument("--duration", type=float,
                        help="seconds of the throughput phase per target (default 10)")
    parser.add_argument("--ttft-streams", type=int,
                        help="streams, one at a time, for time to first token (default 100)")
    parser.add_argument("--warmup", type=float,
                        help="seconds at --concurrency per target first (default 3)")
    parser.add_argument("--targets", default="rag-core,ragward,litellm",
                        help="besides the upstream: rag-core (its own NDJSON stream, no "
                             "gateway), ragward, litellm (default all three)")
    parser.add_argument("--no-kafka", action="store_true",
                        help="in-process bus instead of Kafka (audit durability not measured)")
    parser.add_argument("--client", help=argparse.SUPPRESS)  # internal: the load generator
    parser.add_argument("--serve-upstream", help=argparse.SUPPRESS)  # internal: the upstream
    args = parser.parse_args(argv)
    if args.client:
        return client_entry(args.client)
    if args.serve_upstream:
        return upstream_entry(args.serve_upstream)
    full, quick = {"ttft_streams": 100, "duration": 10.0, "warmup": 3.0}, {
        "ttft_streams": 30, "duration": 4.0, "warmup": 1.5}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:  # what was given stays
            setattr(args, name, value)

    return harness.run_stoppable(run, args)


if __name__ == "__main__":
    sys.exit(main())
