"""DurablePublisher's state machine (live → spooling → live), with a scripted transport in
place of the producer; the same behaviour against real Kafka is in
tests/integration/test_events_faults.py."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from ragward.errors import DependencyUnavailable
from telemetry.publisher import DurablePublisher, Mode, register_publisher_metrics
from telemetry.spool import Spool


class Rejected(Exception):
    """A non-retriable broker error (e.g. record too large)."""


class StateError(Exception):
    """The idempotent producer's sequence went wrong (e.g. after a broker restart)."""


class ScriptedSender:
    """Acks at once while ``up``; while down, sends hang and are delivered when it comes
    back (like a producer retrying)."""

    def __init__(self) -> None:
        self._up = True
        self.delivered: list[tuple[str, bytes, bytes]] = []
        self.hanging: list[tuple[asyncio.Future[Any], tuple[str, bytes, bytes]]] = []
        self.reject: set[bytes] = set()
        self.state_errors = 0  # the next N sends fail with StateError
        self.starts = 0

    @property
    def up(self) -> bool:
        return self._up

    @up.setter
    def up(self, value: bool) -> None:
        self._up = value
        if value:
            for fut, record in self.hanging:
                if not fut.done():
                    self.delivered.append(record)
                    fut.set_result(None)
            self.hanging.clear()

    async def start(self) -> None:
        self.starts += 1
        if not self.up:
            raise ConnectionRefusedError("broker down")

    async def stop(self) -> None:
        for fut, _ in self.hanging:
            if not fut.done():
                fut.set_exception(TimeoutError("stopped"))
        self.hanging.clear()

    async def send(self, topic: str, key: bytes, value: bytes) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if value in self.reject:
            fut.set_exception(Rejected("too large"))
        elif self.state_errors:
            self.state_errors -= 1
            fut.set_exception(StateError("out of order sequence"))
        elif self.up:
            self.delivered.append((topic, key, value))
            fut.set_result(None)
        else:
            self.hanging.append((fut, (topic, key, value)))
        return fut

    def rejects_record(self, exc: BaseException) -> bool:
        return isinstance(exc, Rejected)

    def needs_reset(self, exc: BaseException) -> bool:
        return isinstance(exc, StateError)


def make(tmp_path: Path, sender: ScriptedSender, **kw: Any) -> DurablePublisher:
    spool = Spool(tmp_path / "spool", kw.pop("max_bytes", 1 << 20))
    return DurablePublisher(sender, spool, ack_timeout_s=0.1, connect_timeout_s=0.2,
                            backoff_initial_s=0.01, backoff_max_s=0.05, **kw)


async def test_live_publish_waits_for_the_ack(tmp_path: Path) -> None:
    """With the broker up, publish returns after the ack and nothing is spooled."""
    sender = ScriptedSender()
    pub = make(tmp_path, sender)
    await pub.start()
    try:
        await pub.publish("audit", "acme", b"e1")
        assert sender.delivered == [("audit", b"acme", b"e1")]
        assert pub.published == {("audit", "kafka"): 1} and pub.spool_bytes == 0
    finally:
        await pub.stop()


async def test_outage_spools_then_drains_in_publish_order(tmp_path: Path) -> None:
    """An ack timeout switches to the spool; later publishes queue behind it; when the
    broker returns the spool drains in order before any new live record."""
    sender = ScriptedSender()
    pub = make(tmp_path, sender)
    await pub.start()
    try:
        await pub.publish("audit", "acme", b"before")
        sender.up = False
        for i in range(5):
            await pub.publish("audit", "acme", b"down-%d" % i)
        assert pub.mode is Mode.SPOOLING and pub.spool_bytes > 0
        assert pub.published[("audit", "spool")] == 5
        sender.up = True
        assert await pub.wait_drained(5.0)
        await pub.publish("audit", "acme", b"after")
        values = [v for _, _, v in sender.delivered]
        # down-0 may also arrive late from the producer's buffer (a duplicate): drop repeats
        unique = list(dict.fromkeys(values))
        assert unique == [b"before", *(b"down-%d" % i for i in range(5)), b"after"]
    finally:
        await pub.stop()


async def test_spooling_ends_with_the_outage_under_steady_load(tmp_path: Path) -> None:
    """Publishers that never pause do not keep the publisher spooling after the broker is
    back (each drain batch waits for its acks while new records arrive, so the spool is
    never empty when the drain looks): the drain holds new publishes while it sends the
    last records, goes live, and the order stays the publish order."""
    sender = ScriptedSender()
    pub = make(tmp_path, sender)
    await pub.start()
    done = asyncio.Event()
    sent: list[bytes] = []
    real_send = sender.send

    async def slow_acks(topic: str, key: bytes, value: bytes) -> asyncio.Future[Any]:
        """The scripted ack, 20 ms later: a broker round trip."""
        fut = await real_send(topic, key, value)
        loop = asyncio.get_running_loop()
        acked: asyncio.Future[Any] = loop.create_future()

        def transfer(f: asyncio.Future[Any]) -> None:
            if acked.done():
                return
            if f.cancelled() or f.exception() is not None:
                acked.set_exception(f.exception() or TimeoutError("cancelled"))
            else:
                acked.set_result(None)

        fut.add_done_callback(lambda f: loop.call_later(0.02, transfer, f))
        return acked

    sender.send = slow_acks  # type: ignore[method-assign]

    async def publisher_loop(w: int) -> None:
        i = 0
        while not done.is_set():
            value = b"w%d-%d" % (w, i)
            await pub.publish("audit", "acme", value)
            if w == 0:
                sent.append(value)
            i += 1
            await asyncio.sleep(0)

    loops = [asyncio.create_task(publisher_loop(w)) for w in range(8)]
    try:
        sender.up = False
        await asyncio.sleep(0.3)  # ack timeouts: spooling
        assert pub.mode is Mode.SPOOLING
        sender.up = True
        assert await pub.wait_drained(2.0), "still spooling while the load goes on"
        assert pub.mode is Mode.LIVE
    finally:
        done.set()
        await asyncio.gather(*loops)
        await pub.stop()
    delivered = list(dict.fromkeys(v for _, _, v in sender.delivered if v.startswith(b"w0-")))
    assert [v for v in delivered if v in set(sent)] == sent


async def test_start_with_broker_down_spools_and_leftovers_drain_on_restart(
    tmp_path: Path,
) -> None:
    """Unreachable at start: publishes are spooled; a later publisher on the same spool
    delivers them once the broker is up."""
    sender = ScriptedSender()
    sender.up = False
    pub = make(tmp_path, sender)
    await pub.start()
    await asyncio.gather(*(pub.publish("audit", "t", b"r%d" % i) for i in range(50)))
    await pub.stop()
    assert sender.delivered == []

    sender2 = ScriptedSender()
    pub2 = make(tmp_path, sender2)
    await pub2.start()
    try:
        assert await pub2.wait_drained(5.0)
        assert [v for _, _, v in sender2.delivered] == [b"r%d" % i for i in range(50)]
    finally:
        await pub2.stop()


async def test_stop_drains_the_spool_first_when_kafka_is_back(tmp_path: Path) -> None:
    """SIGTERM right after an outage (``docker stop``): with ``drain_on_stop_s`` the
    spool reaches Kafka before the publisher closes, in order; without it, stop cancels
    the drain and the records wait in the spool for the next start."""
    for grace, expect_all in ((5.0, True), (0.0, False)):
        sender = ScriptedSender()
        pub = make(tmp_path / f"grace-{grace}", sender, drain_on_stop_s=grace)
        await pub.start()
        sender.up = False
        for i in range(20):
            await pub.publish("audit", "t", b"r%d" % i)
        sender.up = True
        await pub.stop()  # at once: the drain is still in its back-off
        delivered = list(dict.fromkeys(v for _, _, v in sender.delivered))
        spooled = [b"r%d" % i for i in range(20)]
        if expect_all:
            assert delivered[-20:] == spooled and pub.spool_bytes == 0
        else:
            assert delivered != spooled and pub.spool_bytes > 0


async def test_stop_keeps_what_it_cannot_drain_within_the_grace(tmp_path: Path) -> None:
    """Kafka still down at SIGTERM: stop gives up after ``drain_on_stop_s`` and the
    records stay in the spool, durable, for the next start to deliver."""
    sender = ScriptedSender()
    sender.up = False
    pub = make(tmp_path, sender, drain_on_stop_s=0.3)
    await pub.start()
    await asyncio.gather(*(pub.publish("audit", "t", b"r%d" % i) for i in range(10)))
    started = asyncio.get_running_loop().time()
    await pub.stop()
    assert asyncio.get_running_loop().time() - started < 5
    later = ScriptedSender()
    pub2 = make(tmp_path, later)
    await pub2.start()
    try:
        assert await pub2.wait_drained(5.0)
        assert [v for _, _, v in later.delivered] == [b"r%d" % i for i in range(10)]
    finally:
        await pub2.stop()


async def test_full_spool_rejects_by_default(tmp_path: Path) -> None:
    """Broker down and spool full: publish raises DependencyUnavailable (-> 503)."""
    sender = ScriptedSender()
    sender.up = False
    pub = make(tmp_path, sender, max_bytes=4096)
    await pub.start()
    try:
        with pytest.raises(DependencyUnavailable):
            for i in range(200):
                await pub.publish("audit", "t", b"x" * 100 + b"%d" % i)
        assert pub.spool_full["rejected"] == 1
    finally:
        await pub.stop()


async def test_full_spool_accept_policy_counts_best_effort(tmp_path: Path) -> None:
    """With full_policy=accept the publish returns and is counted as not durable."""
    sender = ScriptedSender()
    sender.up = False
    pub = make(tmp_path, sender, max_bytes=4096, full_policy="accept")
    await pub.start()
    try:
        for i in range(200):
            await pub.publish("audit", "t", b"x" * 100 + b"%d" % i)
        assert pub.spool_full["accepted"] > 0
    finally:
        await pub.stop()


async def test_record_the_broker_never_accepts_is_refused_not_spooled(tmp_path: Path) -> None:
    """A non-retriable error on the live path raises; spooling would never deliver it."""
    sender = ScriptedSender()
    sender.reject.add(b"huge")
    pub = make(tmp_path, sender)
    await pub.start()
    try:
        with pytest.raises(DependencyUnavailable):
            await pub.publish("audit", "t", b"huge")
        assert pub.spool_bytes == 0 and pub.mode is Mode.LIVE
    finally:
        await pub.stop()


async def test_producer_state_errors_are_retried_with_a_fresh_producer(tmp_path: Path) -> None:
    """An out-of-order-sequence kind of error while draining never drops a spooled record:
    the producer is recreated and the batch sent again."""
    sender = ScriptedSender()
    sender.up = False
    pub = make(tmp_path, sender)
    await pub.start()
    try:
        for i in range(20):
            await pub.publish("audit", "t", b"s%d" % i)
        sender.state_errors = 5
        starts = sender.starts
        sender.up = True
        assert await pub.wait_drained(5.0)
        assert sender.starts >= starts + 2  # connected, then recreated after the error
        assert pub.undeliverable == 0
        assert [v for _, _, v in sender.delivered][-20:] == [b"s%d" % i for i in range(20)]
    finally:
        await pub.stop()


async def test_publish_reports_its_path_and_the_metrics_expose_it(tmp_path: Path) -> None:
    """publish() says how the record was made durable; the gateway-side collector exposes
    spool bytes/capacity and per-path counts in a form promtool accepts."""
    sender = ScriptedSender()
    pub = make(tmp_path, sender)
    registry = CollectorRegistry()
    register_publisher_metrics(pub, registry)
    await pub.start()
    try:
        assert await pub.publish("audit", "t", b"a") == "kafka"
        sender.up = False
        assert await pub.publish("audit", "t", b"b") == "spool"
        text = generate_latest(registry).decode()
    finally:
        sender.up = True
        await pub.stop()
    assert 'ragward_gateway_events_published_total{path="kafka",topic="audit"} 1.0' in text
    assert 'ragward_gateway_events_published_total{path="spool",topic="audit"} 1.0' in text
    assert "ragward_gateway_spool_capacity_bytes 1.048576e+06" in text
    promtool = shutil.which("promtool")
    if promtool:
        check = subprocess.run([promtool, "check", "metrics"], input=text, text=True,
                               capture_output=True, check=False, timeout=30)
        assert check.returncode == 0, check.stderr
