"""Event pipeline benchmark: producer throughput, the latency durability adds, consumer
throughput per process, event-to-metric lag.

    .venv/bin/python -m bench.events            # starts a local Kafka unless
    RAGWARD_KAFKA_BOOTSTRAP=host:port .venv/bin/python -m bench.events

Figures (all in one run, same broker):

1. producer events/s — DurablePublisher.publish (acks=all, wait for every ack) with 256
   concurrent publishers; and fire-and-forget (queued to the producer, no wait);
2. latency of one publish at a steady 500/s: wait-for-ack (the durability guarantee)
   vs fire-and-forget, p50/p99 — the difference is what a request pays; also the spool
   path (Kafka unreachable: append + group-commit fdatasync);
3. consumer events/s of one process — the metrics consumer's loop (decode, dedupe,
   rolling update): from the in-process bus (CPU only) and from Kafka (fetch included);
4. event-to-metric lag at 5,000 events/s: a separate producer process (like a gateway)
   publishes durably at a steady 5,000/s; the lag runs from the event's creation (its
   ``ts``) to its rolling update in the metrics consumer, p50/p99 (target p99 < 1 s);
5. signed events (telemetry.signing): CPU per event to encode unsigned vs sign (the
   gateway's part) and to decode vs verify (every consumer's part), and the metrics
   consumer's throughput on the in-process bus without vs with verification.

Every event is signed, as a gateway signs it, with a key pair made for the run (its key
set is what the consumers verify against).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.harness import module_command
from ragward import devservices
from ragward.logs import configure_logging
from ragward.settings import Settings, load_settings
from telemetry.audit_record import parse_ts_us
from telemetry.configuration import kafka_config, metrics_consumer_config
from telemetry.consumer import Delivery
from telemetry.event_keys import new_key_env, signer_from_settings
from telemetry.events import (
    AuditEvent,
    UsageEvent,
    any_decoder,
    encode,
    new_event_id,
    now_rfc3339,
)
from telemetry.kafka_bus import KafkaBus
from telemetry.memory_bus import MemoryBus
from telemetry.metrics_consumer import MetricsConsumer
from telemetry.signing import (
    EventSigner,
    EventVerifier,
    KeySet,
    PublicKey,
    SignedParts,
    signed_parts,
    unb64url,
)

TENANTS = [f"tenant-{i}" for i in range(10)]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def make_keys(directory: Path) -> None:
    """A key pair for this run, handed to every process through the environment."""
    os.environ.update(new_key_env(directory, "bench"))


@functools.cache
def signer() -> EventSigner:
    return signer_from_settings(load_settings())


class TrustEverything(EventVerifier):
    """The 'before' of figure 5: a consumer that checks nothing."""

    def __init__(self) -> None:
        super().__init__(KeySet())

    def check(self, value: bytes) -> None:
        return None


def event(i: int, *, signed: bool = True) -> tuple[str, bytes]:
    tenant, struct = event_struct(i)
    return tenant, signer().sign(struct) if signed else encode(struct)


def event_struct(i: int) -> tuple[str, AuditEvent | UsageEvent]:
    tenant = TENANTS[i % len(TENANTS)]
    if i % 2:
        return tenant, (UsageEvent(event_id=new_event_id(), request_id=new_event_id(),
                                         ts=now_rfc3339(), tenant=tenant, route="/v1/query",
                                         model="local", prompt_tokens=120 + i % 300,
                                         completion_tokens=40, embedding_tokens=8,
                                         cost_usd=0.0002, cached=i % 5 == 0))
    return tenant, (AuditEvent(event_id=new_event_id(), request_id=new_event_id(),
                                     ts=now_rfc3339(), tenant=tenant, route="/v1/query",
                                     status=200 if i % 50 else 503, latency_ms=5 + i % 200,
                                     question_hmac=["ab" * 32], questions_redacted=["q <EMAIL_1>"]))


def signing_cost(n: int) -> None:
    """Figure 5's CPU part: µs of CPU per event, each step alone, over the same events; and
    the Ed25519 operation alone over the same signed bytes (the floor: what is left of the
    step beyond it is ragward's own work — decoding, the view, base64)."""
    structs = [event_struct(i)[1] for i in range(n)]
    key = signer()._key
    public = signer().public_key
    sign = signer().sign
    verify = EventVerifier(KeySet([PublicKey(signer().key_id, public)])).check

    def cpu_us(step: Callable[[Any], object], items: Sequence[Any]) -> float:
        started = time.process_time()
        for item in items:
            step(item)
        return (time.process_time() - started) / len(items) * 1e6

    wire = [sign(s) for s in structs]
    signed = [signed_parts(value) for value in wire]
    views = [(unb64url(p.signature), p.view) for p in signed if isinstance(p, SignedParts)]
    plain = cpu_us(encode, structs)
    signing = cpu_us(sign, structs)
    ed_sign = cpu_us(lambda v: key.sign(v[1]), views)
    decode = cpu_us(any_decoder.decode, [encode(s) for s in structs])
    verifying = cpu_us(verify, wire)
    ed_verify = cpu_us(lambda v: public.verify(*v), views)
    print(f"  gateway, per event:  encode unsigned {plain:6.1f} µs CPU -> sign "
          f"{signing:6.1f} µs (+{signing - plain:.1f} µs; Ed25519 sign alone {ed_sign:.1f} µs)")
    print(f"  consumer, per event: decode {decode:6.1f} µs CPU -> verify + decode "
          f"{verifying + decode:6.1f} µs (+{verifying:.1f} µs; Ed25519 verify alone "
          f"{ed_verify:.1f} µs, the rest {verifying - ed_verify:.1f} µs)   (n={n})")


def topic_for(settings: Settings, value: bytes) -> str:
    return settings.topic_usage if value.startswith(b'{"type":"usage"') else settings.topic_audit


def settings_for(bootstrap: str, tag: str, data_dir: Path, **extra: object) -> Settings:
    return load_settings(data_dir=data_dir, kafka_bootstrap=bootstrap, log_level="error",
                         topic_audit=f"bench.audit.{tag}", topic_usage=f"bench.usage.{tag}",
                         topic_alerts=f"bench.alerts.{tag}", topic_dead_letter=f"bench.dlq.{tag}",
                         **extra)


async def producer_throughput(settings: Settings, n: int) -> tuple[float, float]:
    publisher = KafkaBus(kafka_config(settings, spool_dir=settings.data_dir / "spool-p")).publisher()
    await publisher.start()
    payloads = [event(i) for i in range(n)]
    try:
        queue = list(reversed(payloads))

        async def worker() -> None:
            while queue:
                key, value = queue.pop()
                await publisher.publish(topic_for(settings, value), key, value)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(256)))
        durable = n / (time.perf_counter() - started)
        print(f"  durable publish (wait for ack, 256 concurrent): {durable:,.0f} events/s")
        started = time.perf_counter()
        for key, value in payloads:
            await publisher.publish_nowait(topic_for(settings, value), key, value)
        assert await publisher.wait_drained(30)
        durable_lease = publisher.durable  # type: ignore[attr-defined]
        while durable_lease._lingering:
            await asyncio.sleep(0.01)
        fire = n / (time.perf_counter() - started)
        print(f"  fire-and-forget (queued, then flushed):          {fire:,.0f} events/s")
        return durable, fire
    finally:
        await publisher.stop()


async def publish_latency(settings: Settings, seconds: float, rate: int,
                          unreachable: bool = False) -> dict[str, list[float]]:
    """Per-publish latency at a steady rate, durable vs fire-and-forget interleaved."""
    if unreachable:
        settings = settings.model_copy(update={"kafka_bootstrap":
                                               f"127.0.0.1:{devservices.free_port()}"})
    bus = KafkaBus(kafka_config(settings, spool_dir=settings.data_dir / ("spool-u" if unreachable else "spool-l")))
    publisher = bus.publisher()
    await publisher.start()
    out: dict[str, list[float]] = {"durable": [], "fire": []}
    tasks: set[asyncio.Task[None]] = set()

    async def one(i: int, kind: str) -> None:
        key, value = event(i)
        started = time.perf_counter()
        if kind == "durable":
            await publisher.publish(topic_for(settings, value), key, value)
        else:
            await publisher.publish_nowait(topic_for(settings, value), key, value)
        out[kind].append(time.perf_counter() - started)

    try:
        interval = 1 / rate
        start = time.perf_counter()
        i = 0
        while time.perf_counter() - start < seconds:
            kind = "durable" if i % 2 == 0 or unreachable else "fire"
            task = asyncio.create_task(one(i, kind))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
            await asyncio.sleep(max(0.0, start + i * interval - time.perf_counter()))
        await asyncio.gather(*tasks)
    finally:
        await publisher.stop()
    return out


async def consumer_throughput_memory(settings: Settings, n: int, *,
                                     verify: bool = True) -> tuple[float, float]:
    """(events/s, µs of CPU per event) of the metrics consumer on the in-process bus: the
    CPU figure holds on a machine shared with other work, where events/s follows the load."""
    bus = MemoryBus(partitions=3, retention_records=n + 1)
    publisher = bus.publisher()
    for i in range(n):
        key, value = event(i, signed=verify)
        await publisher.publish(topic_for(settings, value), key, value)
    config = metrics_consumer_config(settings, None if verify else TrustEverything())
    consumer = MetricsConsumer(config, bus, group_id="bench-mem")
    started, cpu = time.perf_counter(), time.process_time()
    await consumer.start()
    while consumer.loop.handled < n:
        await asyncio.sleep(0.005)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await consumer.stop()
    return n / elapsed, cpu / n * 1e6


async def consumer_throughput_kafka(settings: Settings, n: int) -> float:
    publisher = KafkaBus(kafka_config(settings, spool_dir=settings.data_dir / "spool-c")).publisher()
    await publisher.start()
    try:
        for i in range(n):
            key, value = event(i)
            await publisher.publish_nowait(topic_for(settings, value), key, value)
            if i % 20000 == 0:
                await asyncio.sleep(0)
        while publisher.durable._lingering:  # type: ignore[attr-defined]
            await asyncio.sleep(0.05)
    finally:
        await publisher.stop()
    consumer = MetricsConsumer(metrics_consumer_config(settings),
                               KafkaBus(kafka_config(settings, spool_dir=settings.data_dir / "s2")),
                               group_id=f"bench-{new_event_id()[:6]}")
    await consumer.start()
    first = None
    try:
        while consumer.loop.handled < n:
            if first is None and consumer.loop.handled:
                first = (time.perf_counter(), consumer.loop.handled)
            await asyncio.sleep(0.005)
        assert first is not None
        elapsed = time.perf_counter() - first[0]
        return (n - first[1]) / elapsed
    finally:
        await consumer.stop()


async def paced_publish(settings: Settings, rate: int, seconds: float) -> tuple[int, float]:
    """Durable publishes at ``rate``/s for ``seconds`` (the gateway's part); (sent, rate)."""
    publisher = KafkaBus(kafka_config(settings, spool_dir=settings.data_dir / "spool-e")).publisher()
    await publisher.start()
    tasks: set[asyncio.Task[None]] = set()
    try:
        tick = 0.01
        per_tick = max(1, int(rate * tick))
        start = time.perf_counter()
        i = ticks = 0
        while time.perf_counter() - start < seconds:
            for _ in range(per_tick):
                key, value = event(i)
                task = asyncio.create_task(publisher.publish(topic_for(settings, value), key,
                                                             value))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
            ticks += 1
            await asyncio.sleep(max(0.0, start + ticks * tick - time.perf_counter()))
        offered = i / (time.perf_counter() - start)
        await asyncio.gather(*tasks)
        return i, offered
    finally:
        await publisher.stop()


def producer_process() -> int:
    """``bench/events.py --produce BOOTSTRAP TAG DATA_DIR RATE SECONDS``: the load, in its own
    process like a gateway; prints "sent N offered R"."""
    bootstrap, tag, data_dir, rate, seconds = sys.argv[2:7]
    settings = settings_for(bootstrap, tag, Path(data_dir))
    sent, offered = asyncio.run(paced_publish(settings, int(rate), float(seconds)))
    print(f"sent {sent} offered {offered:.0f}", flush=True)
    return 0


async def end_to_end_lag(settings: Settings, tag: str, rate: int,
                         seconds: float) -> list[float]:
    lags: list[float] = []
    consumer = MetricsConsumer(metrics_consumer_config(settings),
                               KafkaBus(kafka_config(settings, spool_dir=settings.data_dir / "s3")),
                               group_id=f"bench-lag-{new_event_id()[:6]}", from_beginning=False)
    ingest = consumer._handle

    async def timed(batch: list[Delivery]) -> None:
        await ingest(batch)
        now = time.time()
        lags.extend(now - (parse_ts_us(d.event.ts) or 0) / 1e6 for d in batch)

    consumer.loop.handler = timed
    await consumer.start()
    try:
        while not consumer.loop._subscription.assignment:  # type: ignore[union-attr]
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        producer = await asyncio.create_subprocess_exec(
            *module_command("events", "--produce"), settings.kafka_bootstrap or "", tag,
            str(settings.data_dir / "producer"), str(rate), str(seconds),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await producer.communicate()
        sent, offered = out.decode().split()[1], out.decode().split()[3]
        deadline = time.monotonic() + 20
        while len(lags) < int(sent) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        print(f"  producer process offered {float(offered):,.0f} events/s for {seconds:.0f} s; "
              f"measured {len(lags)} of {sent}")
    finally:
        await consumer.stop()
    return lags


async def run(bootstrap: str, quick: bool) -> None:
    tag = new_event_id()[:8]
    with tempfile.TemporaryDirectory(prefix="ragward-bench-") as tmp:
        make_keys(Path(tmp))
        settings = settings_for(bootstrap, tag, Path(tmp))
        n = 20_000 if quick else 50_000
        print(f"[1/5] producer throughput ({n} events, acks=all, idempotent, "
              f"{settings.kafka_compression})", flush=True)
        await producer_throughput(settings, n)

        print("[2/5] publish latency at 500 publishes/s for 6 s (interleaved)", flush=True)
        lat = await publish_latency(settings, 6.0, 500)
        spool = await publish_latency(settings, 3.0, 500, unreachable=True)
        for name, values in (("wait for Kafka ack (durable)", lat["durable"]),
                             ("fire-and-forget (baseline)", lat["fire"]),
                             ("spool: append + fdatasync", spool["durable"])):
            print(f"  {name:30s} p50 {pct(values, .5) * 1e3:7.3f} ms   "
                  f"p99 {pct(values, .99) * 1e3:7.3f} ms   (n={len(values)})")
        added50 = (pct(lat["durable"], .5) - pct(lat["fire"], .5)) * 1e3
        added99 = (pct(lat["durable"], .99) - pct(lat["fire"], .99)) * 1e3
        print(f"  durability adds: p50 {added50:.3f} ms, p99 {added99:.3f} ms per request "
              f"(RAGWARD_KAFKA_LINGER_MS={settings.kafka_linger_ms})")
        if settings.kafka_linger_ms:
            eager = settings.model_copy(update={"kafka_linger_ms": 0})
            lat0 = await publish_latency(eager, 4.0, 500)
            print(f"  same with RAGWARD_KAFKA_LINGER_MS=0: durable p50 "
                  f"{pct(lat0['durable'], .5) * 1e3:.3f} ms p99 "
                  f"{pct(lat0['durable'], .99) * 1e3:.3f} ms; fire-and-forget p50 "
                  f"{pct(lat0['fire'], .5) * 1e3:.3f} ms")

        m = 100_000 if quick else 200_000
        print(f"[3/5] consumer throughput, one process ({m} events; target >= 20,000/s)",
              flush=True)
        mem, _ = await consumer_throughput_memory(settings, m)
        print(f"  metrics consumer on the in-process bus (decode+dedupe+rolling): "
              f"{mem:,.0f} events/s")
        kafka_settings = settings_for(bootstrap, tag + "c", Path(tmp))
        kaf = await consumer_throughput_kafka(kafka_settings, m)
        print(f"  metrics consumer from Kafka (fetch+decode+dedupe+rolling):      "
              f"{kaf:,.0f} events/s")

        print("[4/5] event-to-metric lag at 5,000 events/s (target p99 < 1 s)", flush=True)
        lag_settings = settings_for(bootstrap, tag + "l", Path(tmp))
        lags = await end_to_end_lag(lag_settings, tag + "l", 5000, 8.0 if quick else 15.0)
        print(f"  lag p50 {pct(lags, .5) * 1e3:.1f} ms   p99 {pct(lags, .99) * 1e3:.1f} ms   "
              f"max {max(lags) * 1e3:.1f} ms   mean {statistics.fmean(lags) * 1e3:.1f} ms")

        await signing_figures(settings, m // 2, quick)


async def signing_figures(settings: Settings, n: int, quick: bool) -> None:
    """Figure 5 (needs no broker)."""
    print("[5/5] signed events: CPU per event, and consumer throughput before/after",
          flush=True)
    signing_cost(5_000 if quick else 20_000)
    before, before_cpu = await consumer_throughput_memory(settings, n, verify=False)
    after, after_cpu = await consumer_throughput_memory(settings, n)
    print(f"  metrics consumer, in-process bus: unsigned, unverified {before:,.0f} events/s"
          f" ({before_cpu:.1f} µs CPU/event) -> signed, verified {after:,.0f} events/s "
          f"({after_cpu:.1f} µs CPU/event) (n={n}; load average "
          f"{os.getloadavg()[0]:.1f})")


async def run_signing_only(quick: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="ragward-bench-") as tmp:
        make_keys(Path(tmp))
        await signing_figures(settings_for("127.0.0.1:9", "s", Path(tmp)),
                              20_000 if quick else 100_000, quick)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--produce":
        configure_logging("console", "error")
        return producer_process()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    parser.add_argument("--signing-only", action="store_true",
                        help="only figure 5 (signing and verifying; no broker)")
    args = parser.parse_args()
    configure_logging("console", "error")
    if args.signing_only:
        asyncio.run(run_signing_only(args.quick))
        return 0
    with ExitStack() as stack:
        bootstrap = os.environ.get("RAGWARD_KAFKA_BOOTSTRAP")
        if not bootstrap:
            print("starting a local Kafka (ragward.devservices)...", flush=True)
            bootstrap = stack.enter_context(devservices.running("kafka")).address
        print(f"Kafka at {bootstrap}")
        started = time.perf_counter()
        asyncio.run(run(bootstrap, args.quick))
        print(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
