"""Forged events on the real broker: records written straight to the audit and usage
topics with Debian's kcat — unsigned, signed with a key outside the key set, a real
event with one field changed — never reach the audit store, /v1/audit or the metrics;
they land in the dead-letter topic with their reason, fire the ForgedEvents alert, and
the chain still verifies. Both on the plain broker (anyone who reaches it) and on the
SASL_SSL broker with ACLs, forged there with the gateway's own Kafka credentials — the
one user the ACLs let write the audit topic, so only the signatures stop it."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from alerting.configuration import alert_config
from alerting.consumer import AlertConsumer
from ragward.devsecure import ADMIN, COMPONENT_USERS, MECHANISM, SecureKafka
from ragward.settings import Settings
from telemetry.audit_consumer import AuditConsumer
from telemetry.audit_store import AuditQuery, VerifyReport, open_backend, open_store, store_reader
from telemetry.configuration import (
    audit_consumer_config,
    audit_store_config,
    kafka_config,
    metrics_consumer_config,
)
from telemetry.dead_letter import original_value
from telemetry.event_keys import key_set_from_settings
from telemetry.events import AuditEvent, encode, new_event_id, now_rfc3339
from telemetry.kafka_bus import KafkaBus
from telemetry.metrics_consumer import MetricsConsumer
from telemetry.signing import EventSigner
from tests.gateway_harness import bearer, gateway_settings, running_gateway
from tests.signing_support import sign
from tests.upstream_server import UpstreamServer

pytestmark = pytest.mark.kafka


def _kcat() -> str:
    kcat = shutil.which("kcat")
    if kcat is None:
        pytest.fail("kcat is not installed (deploy/install-system-deps.sh installs it)")
    return kcat


def kcat_produce(bootstrap: str, topic: str, key: str, value: bytes,
                 options: list[str] | None = None) -> None:
    """One record, as an outsider with network access to the broker would write it
    (``options``: kcat's ``-X`` settings, e.g. stolen credentials)."""
    subprocess.run([_kcat(), "-b", bootstrap, *(options or []), "-t", topic, "-P", "-k", key,
                    "-K", "\t"],
                   input=key.encode() + b"\t" + value + b"\n", check=True, timeout=60)


def kcat_read(bootstrap: str, topic: str, options: list[str] | None = None) -> list[bytes]:
    out = subprocess.run([_kcat(), "-b", bootstrap, *(options or []), "-t", topic, "-C", "-e",
                          "-q", "-o", "beginning", "-f", "%s\n"], capture_output=True,
                         check=True, timeout=60).stdout
    return [line for line in out.splitlines() if line.strip()]


def _topics(unique: str) -> dict[str, str]:
    return {"topic_audit": f"audit-{unique}", "topic_usage": f"usage-{unique}",
            "topic_alerts": f"alerts-{unique}", "topic_dead_letter": f"dead-{unique}"}


@dataclass
class Broker:
    """Where the test runs: the settings every part gets, and kcat's options for the
    forger and for the investigator reading the dead letters."""

    bootstrap: str
    overrides: dict[str, Any]
    secure: SecureKafka | None = None
    forger: list[str] = field(default_factory=list)
    investigator: list[str] = field(default_factory=list)

    async def prepare(self, unique: str, tmp_path: Path) -> None:
        """On the secured broker, this test's topics and ACLs (in force once it returns)."""
        if self.secure is not None:
            admin = self.secure.settings(ADMIN, **_topics(unique), data_dir=tmp_path / "admin")
            await self.secure.prepare(admin, {kind: f"{kind}-{unique}"
                                              for kind in ("metrics", "alerts", "audit")})


def _kcat_sasl(secure: SecureKafka, user: str) -> list[str]:
    settings = {"security.protocol": "SASL_SSL", "sasl.mechanisms": MECHANISM,
                "sasl.username": user, "sasl.password": secure.passwords[user],
                "ssl.ca.location": str(secure.pki.ca_file)}
    return [arg for k, v in settings.items() for arg in ("-X", f"{k}={v}")]


@pytest.fixture(params=["plaintext", "sasl_ssl"])
def broker(request: pytest.FixtureRequest) -> Broker:
    """The plain session broker, or the SASL_SSL one: there every part runs as
    ragward-serve (every component's rights) and the forger holds the gateway's
    credentials."""
    if request.param == "plaintext":
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        return Broker(bootstrap, {"kafka_bootstrap": bootstrap})
    secure: SecureKafka = request.getfixturevalue("secure_kafka")
    return Broker(secure.bootstrap, secure.overrides(COMPONENT_USERS["serve"]), secure,
                  _kcat_sasl(secure, COMPONENT_USERS["gateway"]), _kcat_sasl(secure, ADMIN))


async def _until(check: Callable[[], Awaitable[bool] | bool], what: str,
                 within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while True:
        result = check()
        if await result if isinstance(result, Awaitable) else result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in time")
        await asyncio.sleep(0.1)


def _forgeries(real: AuditEvent) -> dict[str, bytes]:
    """The three forgeries, by the reason each must be refused with."""
    unsigned = AuditEvent(event_id=new_event_id(), request_id="forged-unsigned", ts=now_rfc3339(),
                          tenant="acme", subject="mallory", status=200)
    stranger = EventSigner(Ed25519PrivateKey.generate(), "not-in-the-set").sign(
        AuditEvent(event_id=new_event_id(), request_id="forged-stranger", ts=now_rfc3339(),
                   tenant="acme", subject="mallory", status=200))
    changed = json.loads(sign(real))
    changed["subject"] = "mallory"  # one field of a real, gateway-signed event
    return {"unsigned": encode(unsigned), "unknown_key": stranger,
            "bad_signature": json.dumps(changed).encode()}


async def test_forged_events_are_dead_lettered_alerted_and_never_stored(
    tmp_path: Path, upstream: UpstreamServer, broker: Broker, unique: str
) -> None:
    """A real request is stored and readable on /v1/audit; the forgeries are not — in the
    store, on /v1/audit or in the metrics — and each dead letter names its reason and keeps
    the forged bytes; ForgedEvents fires; `audit verify` (chain and signatures) passes."""
    topics = _topics(unique)
    await broker.prepare(unique, tmp_path)
    # a slow shared machine must not push the request's audit event into the spool
    settings = gateway_settings(tmp_path, upstream.url, alert_eval_interval_s=0.2,
                                kafka_ack_timeout_s=20, **broker.overrides, **topics)

    def bus(name: str) -> KafkaBus:  # one spool directory per bus, as per process
        return KafkaBus(kafka_config(settings, spool_dir=tmp_path / f"spool-{name}"))

    store = open_store(audit_store_config(settings))
    audit = AuditConsumer.from_bus(audit_consumer_config(settings), bus("audit"), store,
                                   group=f"audit-{unique}",
                                   poll_timeout_s=0.2)
    metrics = MetricsConsumer(metrics_consumer_config(settings), bus("metrics"),
                              group_id=f"metrics-{unique}")
    alerts = AlertConsumer(metrics_consumer_config(settings), alert_config(settings), bus("alerts"),
                           group_id=f"alerts-{unique}",
                           from_beginning=True)
    for part in (audit, metrics, alerts):
        await part.start()
    try:
        async with running_gateway(settings, bus=bus("gateway"),
                                   audit_reader=store_reader(store)) as gw:
            answer = await gw.client.post("/v1/query", json={"question": "hello"},
                                          headers=bearer(roles=["admin"]))
            assert answer.status_code == 200, answer.text
            request_id = answer.json()["request_id"]

            async def stored() -> bool:
                return len((await store.query(AuditQuery(request_id=request_id))).records) == 1

            await _until(stored, "the real request stored")
            real = AuditEvent(event_id=new_event_id(), request_id="real-twin", ts=now_rfc3339(),
                              tenant="acme", subject="alice", status=200)
            forgeries = _forgeries(real)
            for value in forgeries.values():
                kcat_produce(broker.bootstrap, topics["topic_audit"], "acme", value,
                             broker.forger)
            kcat_produce(broker.bootstrap, topics["topic_usage"], "acme", json.dumps(
                {"type": "usage", "event_id": new_event_id(), "request_id": "forged-usage",
                 "ts": now_rfc3339(), "tenant": "acme", "total_tokens": 10**9,
                 "cost_usd": 10**6}).encode(), broker.forger)
            await _until(lambda: audit.rejected >= 3, "the audit consumer refused the three")
            await _until(lambda: metrics.loop.rejected >= 4, "the metrics consumer refused four")
            await _until(lambda: any(a.rule == "ForgedEvents" and a.state == "firing"
                                     for a in alerts.service.engine.alerts()),
                         "ForgedEvents firing", within=30)
            listed = await gw.client.get("/v1/audit", headers=bearer(roles=["admin"]))
            assert listed.status_code == 200, listed.text
            shown = {r["request_id"] for r in listed.json()["records"]}
        assert request_id in shown
        assert not shown & {"forged-unsigned", "forged-stranger", "real-twin", "forged-usage"}
        page = await store.query(AuditQuery(subject="mallory"))
        assert page.records == []
        assert metrics.view.query("tokens_total", "1h", [])[0].value < 10**9
        letters = [json.loads(v) for v in kcat_read(broker.bootstrap, topics["topic_dead_letter"],
                                                     broker.investigator)]
        from_audit = {(d["reason"], d["value"]) for d in letters if d["group"] == audit.group}
        assert from_audit == {(r, v.decode()) for r, v in forgeries.items()}
        assert all(original_value(json.dumps(d).encode()) == d["value"].encode()
                   for d in letters)
        stranger = next(d for d in letters if d["reason"] == "unknown_key")
        assert stranger["key_id"] == "not-in-the-set" and "not-in-the-set" in stranger["detail"]
        report = await asyncio.to_thread(_verify_with_keys, settings)
        assert report.ok and report.signatures is not None and report.signatures.signed >= 1
    finally:
        for part in (alerts, metrics, audit):
            await part.stop()
        await store.close()


def _verify_with_keys(settings: Settings) -> VerifyReport:
    backend = open_backend(audit_store_config(settings))
    try:
        return backend.verify(keys=key_set_from_settings(settings))
    finally:
        backend.close()
