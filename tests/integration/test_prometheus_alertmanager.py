"""A real Prometheus and a real Alertmanager operating real ragward processes (issue 19).

One stack per module: Kafka (the session's), a rag_core double (tests/upstream_server.py),
``ragward gateway`` and ``ragward consumer metrics|alerts|audit`` as OS processes, Debian's
``prometheus-alertmanager`` and ``prometheus``, and a webhook receiver (a real HTTP server
in the test) behind Alertmanager. Every server binds to 127.0.0.1 on a free port.

What the configurations are made of, and what the test changes in them:

* Prometheus's configuration is *generated* from ``deploy/prometheus/prometheus.yml``: its
  jobs (names, ``honor_labels``) with their DNS discovery replaced by the test's targets;
  the scrape and evaluation intervals shortened to 1 s; an ``alerting`` block pointing at
  the test's Alertmanager. The rules are ``deploy/prometheus/rules/*.yml`` copied with
  every ``for:`` shortened to 1 s; nothing else in them changes (expressions, windows,
  thresholds, labels).
* Alertmanager's configuration is ``deploy/alertmanager/alertmanager.yml`` with every
  receiver's webhook URL pointed at the test's receiver (``/<receiver name>``) and
  ``group_wait``/``group_interval`` shortened to 1 s (``repeat_interval`` unchanged).
* The alert consumer runs ``alerting/default_rules.yaml`` with every ``for:`` shortened to
  1 s, evaluates every 0.5 s and re-posts firing alerts to Alertmanager every 2 s.
* Prometheus re-sends its alerts every 2 s (``--rules.alert.resend-delay``), so the
  "exactly once" assertions are made after both senders have repeated themselves.

The test's webhook sees every alert the stack raises (with 1 s ``for:``, others fire too,
e.g. the fast-burn SLO alert); each assertion picks its alertname and tenant.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from alerting.engine import Alert, fingerprint
from alerting.grouping import NflogEntry, Notification
from alerting.notifiers.alertmanager import VALIDITY_FACTOR, AlertmanagerNotifier
from alerting.notifiers.format import rfc3339
from ragward.devservices import free_port
from tests.conftest import TEST_SECRET
from tests.gateway_harness import bearer
from tests.integration.test_gateway_processes import program_process, ragward_process, wait_healthy
from tests.receivers import HttpReceiver
from tests.upstream_server import UpstreamServer

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
INTERVAL_S = 1.0                   # Prometheus's scrape and evaluation interval here
RESEND_S = 2.0                     # Prometheus's and ragward's re-post interval here
SHORT_FOR = "1s"
ERRORS_TENANT, HEALTHY_TENANT = "acme", "globex"
JOBS = ("ragward-gateway", "ragward-consumer-metrics", "ragward-consumer-alerts",
        "ragward-consumer-audit")


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: run deploy/install-system-deps.sh", pytrace=False)
    return path


# ---------------------------------------------------------------- generated configurations


def _shorten_for(rules: dict[str, Any], key: str) -> dict[str, Any]:
    """``rules`` (Prometheus groups, or ragward's rule list) with every ``for:`` set to 1 s."""
    for rule in rules[key] if key == "rules" else [r for g in rules[key] for r in g["rules"]]:
        if "for" in rule:
            rule["for"] = SHORT_FOR
    return rules


def prometheus_config(workdir: Path, targets: dict[str, str], alertmanager: str) -> Path:
    """deploy/prometheus's jobs and rules, rewritten for this test (module docstring)."""
    deployed = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = []
    for job in deployed["scrape_configs"]:
        job = {k: v for k, v in job.items() if not k.endswith("_sd_configs")}
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
        jobs.append(job)
    assert {job["job_name"] for job in jobs} == set(targets), "a deployed job has no target"
    rules_dir = workdir / "rules"
    rules_dir.mkdir()
    for path in sorted((DEPLOY / "prometheus" / "rules").glob("*.yml")):
        rules = _shorten_for(yaml.safe_load(path.read_text()), "groups")
        (rules_dir / path.name).write_text(yaml.safe_dump(rules, sort_keys=False))
    interval = f"{INTERVAL_S:g}s"
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(rules_dir / "*.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": jobs,
    }
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def alertmanager_config(workdir: Path, webhook: HttpReceiver) -> Path:
    """deploy/alertmanager/alertmanager.yml with the test's receiver and 1 s grouping."""
    config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = webhook.url(f"/{receiver['name']}")
    routes = [config["route"]]
    while routes:
        route = routes.pop()
        for key in ("group_wait", "group_interval"):
            if key in route:
                route[key] = "1s"
        routes.extend(route.get("routes", []))
    path = workdir / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def alert_rules(workdir: Path) -> Path:
    rules = _shorten_for(yaml.safe_load((REPO / "alerting" / "default_rules.yaml").read_text()),
                         "rules")
    path = workdir / "alert-rules.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


# ---------------------------------------------------------------- the stack


@dataclass
class Stack:
    prometheus: str
    alertmanager: str
    gateway: str
    consumers: dict[str, str]
    webhook: HttpReceiver
    upstream: UpstreamServer
    client: httpx.AsyncClient

    async def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query through Prometheus's HTTP API (at a past time if given)."""
        params = {"query": expr} if at is None else {"query": expr, "time": repr(at)}
        answer = await self.client.get(f"{self.prometheus}/api/v1/query", params=params)
        body = answer.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def value(self, expr: str, at: float | None = None) -> float | None:
        result = await self.query(expr, at)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    async def scrape(self, url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """A /metrics page as {(sample name, labels): value}."""
        text = (await self.client.get(f"{url}/metrics")).text
        return {(s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    async def traffic(self, tenant: str, count: int, *, failing: bool = False) -> None:
        """``count`` distinct questions (no cache hits) through the gateway; the upstream
        answers 500 while ``failing`` (the gateway then answers 5xx)."""
        self.upstream.behaviour.status = 500 if failing else 200
        headers = bearer(tenant=tenant, sub=f"user-{tenant}")
        in_flight = asyncio.Semaphore(16)
        try:
            async def ask(i: int) -> int:
                async with in_flight:
                    answer = await self.client.post(
                        f"{self.gateway}/v1/query", headers=headers,
                        json={"question": f"leave policy {uuid.uuid4().hex} #{i}?"})
                return answer.status_code

            statuses = await asyncio.gather(*(ask(i) for i in range(count)))
        finally:
            self.upstream.behaviour.status = 200
        want = (lambda s: s >= 500) if failing else (lambda s: s == 200)
        assert all(want(s) for s in statuses), statuses


async def until(condition: Callable[[], Awaitable[bool]], what: str,
                timeout_s: float = 30.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
async def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
                ) -> AsyncIterator[Stack]:
    """The module's stack (module docstring), every process healthy or ready."""
    workdir = tmp_path_factory.mktemp("prom-am")
    logs = workdir / "logs"
    logs.mkdir()
    unique = uuid.uuid4().hex[:10]
    ports = {name: free_port() for name in ("prometheus", "alertmanager", *JOBS)}
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    webhook = await HttpReceiver().start()
    upstream = UpstreamServer()
    await upstream.start()
    env = {"RAGWARD_KAFKA_BOOTSTRAP": kafka_bootstrap, "RAGWARD_JWT_SECRET": TEST_SECRET,
           "RAGWARD_TOPIC_AUDIT": f"audit-{unique}", "RAGWARD_TOPIC_USAGE": f"usage-{unique}",
           "RAGWARD_TOPIC_ALERTS": f"alerts-{unique}",
           "RAGWARD_TOPIC_DEAD_LETTER": f"dead-{unique}", "RAGWARD_LOG_LEVEL": "warning"}
    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "ragward-gateway": (["gateway", "--port", str(ports["ragward-gateway"])], {
            "RAGWARD_RAG_CORE_URL": upstream.url, "RAGWARD_UPSTREAM_RETRIES": "0",
            "RAGWARD_CIRCUIT_FAILURE_THRESHOLD": "100000", "RAGWARD_QUOTA_RPM": "100000"}),
    }
    for job in JOBS[1:]:
        kind = job.removeprefix("ragward-consumer-")
        commands[job] = (["consumer", kind, "--port", str(ports[job]), "--group",
                          f"{kind}-{unique}"], {})
    commands["ragward-consumer-alerts"][1].update({
        "RAGWARD_ALERTMANAGER_URL": url["alertmanager"],
        "RAGWARD_ALERTMANAGER_RESEND_S": f"{RESEND_S:g}", "RAGWARD_ALERT_EVAL_INTERVAL_S": "0.5",
        "RAGWARD_ALERT_RULES": str(alert_rules(workdir)),
        "RAGWARD_ALERT_EXTERNAL_URL": url["ragward-consumer-alerts"]})
    programs = {
        "alertmanager": [
            _binary("prometheus-alertmanager"),
            f"--config.file={alertmanager_config(workdir, webhook)}",
            f"--storage.path={workdir / 'alertmanager'}",
            f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
            "--cluster.listen-address=", "--log.level=warn"],
        # started with the rest: until a ragward target answers, its up is 0 (and
        # RagwardTargetDown may fire: the assertions pick their alerts by name)
        "prometheus": [
            _binary("prometheus"),
            "--config.file=" + str(prometheus_config(
                workdir, {job: f"127.0.0.1:{ports[job]}" for job in JOBS},
                f"127.0.0.1:{ports['alertmanager']}")),
            f"--storage.tsdb.path={workdir / 'prometheus'}",
            f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
            f"--rules.alert.resend-delay={RESEND_S:g}s", "--log.level=warn"],
    }
    try:
        with ExitStack() as running:
            waits = []
            for name, argv in programs.items():
                log = logs / f"{name}.log"
                proc = running.enter_context(program_process(argv, {}, log))
                waits.append(wait_healthy(url[name], proc, log, path="/-/ready"))
            for job, (args, extra) in commands.items():
                log = logs / f"{job}.log"
                proc = running.enter_context(ragward_process(
                    args, {**env, "RAGWARD_DATA_DIR": str(workdir / job), **extra}, log))
                # consumers: /ready once they joined their group (the alert consumer starts
                # at the topics' end, so it must have joined before any traffic)
                waits.append(wait_healthy(url[job], proc, log,
                                          path="/health" if job == "ragward-gateway" else "/ready"))
            await asyncio.gather(*waits)
            async with httpx.AsyncClient(timeout=10) as client:
                yield Stack(prometheus=url["prometheus"], alertmanager=url["alertmanager"],
                            gateway=url["ragward-gateway"],
                            consumers={job: url[job] for job in JOBS[1:]},
                            webhook=webhook, upstream=upstream, client=client)
    finally:
        await upstream.stop()
        await webhook.stop()


WARM_UP = {(ERRORS_TENANT, "2xx"): 1, (ERRORS_TENANT, "5xx"): 1, (HEALTHY_TENANT, "2xx"): 1}
INCIDENT = {(ERRORS_TENANT, "2xx"): 31, (ERRORS_TENANT, "5xx"): 11, (HEALTHY_TENANT, "2xx"): 21}
"""Requests per (tenant, status class) after the warm-up and after the incident."""


async def _prometheus_has(stack: Stack, counts: dict[tuple[str, str], int]) -> bool:
    found = {(r["metric"]["tenant"], r["metric"]["status_class"]): float(r["value"][1])
             for r in await stack.query("sum by (tenant, status_class) (ragward_requests_total)")}
    return found == counts


@pytest.fixture(scope="module")
async def incident(stack: Stack) -> float:
    """One request per series first (so Prometheus holds every series before the incident),
    then the incident: the failing tenant gets 10 of its next 40 requests answered 5xx, the
    healthy one 20 successes. Returns once Prometheus has scraped the final counts (the
    time it saw them)."""
    await stack.traffic(ERRORS_TENANT, 1)
    await stack.traffic(ERRORS_TENANT, 1, failing=True)
    await stack.traffic(HEALTHY_TENANT, 1)
    await until(lambda: _prometheus_has(stack, WARM_UP), "Prometheus to scrape the warm-up")
    await stack.traffic(ERRORS_TENANT, 30)
    await stack.traffic(ERRORS_TENANT, 10, failing=True)
    await stack.traffic(HEALTHY_TENANT, 20)
    await until(lambda: _prometheus_has(stack, INCIDENT), "Prometheus to scrape the incident")
    return time.time()


# ---------------------------------------------------------------- Prometheus


async def test_prometheus_scrapes_the_gateway_and_every_consumer(stack: Stack) -> None:
    """Every job of deploy/prometheus/prometheus.yml has its target up (``up == 1``), as
    Prometheus's own HTTP API reports it."""
    async def all_up() -> bool:
        return {r["metric"]["job"]: r["value"][1] for r in await stack.query("up")} == {
            job: "1" for job in JOBS}

    await until(all_up, "up == 1 for every ragward job")


@dataclass(frozen=True)
class Seen:
    """What Prometheus holds of one tenant's ragward_requests_total series."""

    before_first_sample: float
    """Requests counted before Prometheus's first sample: rate() cannot see them."""
    min_span_s: float
    """Shortest time between a series' first and last sample."""
    max_interval_s: float
    """Longest average time between samples (scrapes run late on a busy machine)."""


async def _seen(stack: Stack, tenant: str, at: float) -> Seen:
    """The samples a rule evaluated at ``at`` saw: later scrapes lengthen the span."""
    series = await stack.query(f'ragward_requests_total{{tenant="{tenant}"}}[5m]', at)
    assert series, tenant
    firsts = [float(s["values"][0][1]) for s in series]
    spans = [float(s["values"][-1][0]) - float(s["values"][0][0]) for s in series]
    intervals = [span / (len(s["values"]) - 1) for span, s in zip(spans, series, strict=True)]
    return Seen(sum(firsts), min(spans), max(intervals))


async def test_recording_rules_agree_with_ragwards_metrics_and_errors_fire(
        stack: Stack, incident: float) -> None:
    """Over the same gateway traffic, the recording rules' per-tenant request rate and error
    ratio agree with the metrics consumer's own 5-minute figures, and induced 5xx make
    RagwardHighErrorRate fire in Prometheus for that tenant only.

    The tolerance, from how each side computes: ragward counts every request in the window
    and divides by the span covered (290-300 s, telemetry/rolling.py). Prometheus's rate()
    sees only what a counter gained after the series' first scrape (the warm-up requests
    here, one per series) and extrapolates the increase to the window's end by at most
    1.1 average sample intervals i over the sampled span s (and never further back than
    zero). So with T requests counted by ragward, w of them before the first scrape:
    ``(T - w) / 300 <= ragward:requests:rate5m <= T (1 + 1.1 i / s) / 300``, and the
    error ratio lies between the matching quotients of those bounds.
    """
    async def rules_evaluated_after_scrape() -> bool:
        stamp = await stack.value('timestamp(ragward:requests:rate5m{tenant="acme"})')
        return stamp is not None and stamp > incident

    await until(rules_evaluated_after_scrape, "the recording rules' next evaluation")

    own = await stack.scrape(stack.consumers["ragward-consumer-metrics"])
    for tenant, requests, errors in ((ERRORS_TENANT, 42, 11), (HEALTHY_TENANT, 21, 0)):
        labels = frozenset({("tenant", tenant), ("window", "5m")})
        own_rate = own[("ragward_rolling_request_rate", labels)]
        own_ratio = own[("ragward_rolling_error_rate", labels)]
        assert requests / 300 <= own_rate <= requests / 290, (tenant, own_rate)
        assert own_ratio == pytest.approx(errors / requests)

        # One evaluation of the rules, and the samples it saw: read at its own timestamp
        # (the span of a series measured later is longer, and the bound too loose).
        evaluated = await stack.value(f'timestamp(ragward:requests:rate5m{{tenant="{tenant}"}})')
        assert evaluated is not None
        seen = await _seen(stack, tenant, evaluated)
        grow = 1 + 1.1 * seen.max_interval_s / seen.min_span_s
        rate = await stack.value(f'ragward:requests:rate5m{{tenant="{tenant}"}}', evaluated)
        assert rate is not None
        assert (requests - seen.before_first_sample) / 300 <= rate <= requests * grow / 300, (
            tenant, rate, own_rate, seen)
        ratio = await stack.value(
            f'ragward:request_error_ratio:rate5m{{tenant="{tenant}"}}', evaluated)
        if errors:
            assert ratio is not None
            low = (errors - 1) / (requests * grow)            # one warm-up 5xx, one 2xx
            high = errors * grow / (requests - 2)
            assert low <= ratio <= high and low <= own_ratio <= high, (ratio, own_ratio)
        else:  # no 5xx series for the tenant: the ratio has no sample, ragward says 0
            assert ratio is None and own_ratio == 0.0

    async def firing() -> bool:
        alerts = (await stack.client.get(f"{stack.prometheus}/api/v1/alerts")).json()
        states = {a["labels"].get("tenant"): a["state"] for a in alerts["data"]["alerts"]
                  if a["labels"]["alertname"] == "RagwardHighErrorRate"}
        assert HEALTHY_TENANT not in states, states
        return states.get(ERRORS_TENANT) == "firing"

    await until(firing, "RagwardHighErrorRate to fire for the failing tenant")


# ---------------------------------------------------------------- Alertmanager


def _probe_alert(alertname: str, state: str, now: float) -> Notification:
    labels = {"alertname": alertname, "tenant": "probe", "severity": "ticket"}
    alert = Alert(rule=alertname, fingerprint=fingerprint(labels), labels=labels,
                  annotations={"summary": "probe for tenant probe"},
                  state=state,  # type: ignore[arg-type]
                  active_at=now - 5, fired_at=now - 2,
                  resolved_at=now if state == "resolved" else None)
    key = "{}:{}"
    return Notification("alertmanager", key, {}, state,  # type: ignore[arg-type]
                        (alert,), NflogEntry(key, "alertmanager", frozenset(), frozenset(), now))


async def test_alertmanager_receiver_against_a_real_alertmanager(stack: Stack) -> None:
    """The receiver's posts are accepted by Alertmanager's v2 API and mean what they say:
    a firing alert is active there with its labels, annotations, startsAt, generatorURL and
    an endsAt four resend intervals ahead; posting it resolved (endsAt set) ends it."""
    alertname = f"Probe{uuid.uuid4().hex[:8]}"
    now = time.time()
    notifier = AlertmanagerNotifier(stack.client, stack.alertmanager + "/", resend_s=30,
                                    external_url="http://ragward.example/", clock=lambda: now)

    async def in_alertmanager() -> list[dict[str, Any]]:
        answer = await stack.client.get(f"{stack.alertmanager}/api/v2/alerts",
                                        params={"filter": f'alertname="{alertname}"'})
        assert answer.status_code == 200, answer.text
        found: list[dict[str, Any]] = answer.json()
        return found

    await notifier.send(_probe_alert(alertname, "firing", now))
    [active] = await in_alertmanager()
    assert active["status"]["state"] == "active"
    assert active["labels"] == {"alertname": alertname, "tenant": "probe", "severity": "ticket"}
    assert active["annotations"] == {"summary": "probe for tenant probe"}
    assert active["generatorURL"] == "http://ragward.example/api/alerts"
    assert active["startsAt"] == rfc3339(now - 2)
    assert active["endsAt"] == rfc3339(now + VALIDITY_FACTOR * 30)

    await notifier.send(_probe_alert(alertname, "resolved", now))
    assert await in_alertmanager() == []   # the v2 API lists only alerts that have not ended


def _arrivals(webhook: HttpReceiver, path: str) -> Counter[tuple[str, str, str]]:
    """Webhook notifications at ``path`` by (alertname, tenant, status)."""
    return Counter((body["groupLabels"].get("alertname", ""), body["groupLabels"].get("tenant", ""),
                    body["status"]) for body in webhook.bodies(path))


async def test_prometheus_and_ragward_alerts_reach_the_webhook_once_firing_once_resolved(
        stack: Stack, incident: float) -> None:
    """Prometheus (RagwardHighErrorRate) and ragward's alert consumer (HighErrorRate, through
    its Alertmanager receiver) both send to Alertmanager, which routes both (severity=page)
    to the example config's pager receiver: each arrives firing exactly once — also after
    both senders have re-posted it — and, once enough successful traffic brings the 5-minute
    error ratio under 5 %, resolved exactly once. Last in the module: its recovery traffic
    changes what the recording-rule test measures."""
    pager = "/ragward-pager"
    firing = {(name, ERRORS_TENANT, "firing") for name in ("RagwardHighErrorRate", "HighErrorRate")}
    resolved = {(name, ERRORS_TENANT, "resolved")
                for name in ("RagwardHighErrorRate", "HighErrorRate")}

    async def arrived(keys: set[tuple[str, str, str]]) -> bool:
        return keys <= set(_arrivals(stack.webhook, pager))

    await until(lambda: arrived(firing), "both firing notifications at the webhook")
    await _resent(stack, ("prometheus", "ragward"))
    counts = _arrivals(stack.webhook, pager)
    assert all(counts[key] == 1 for key in firing), counts

    await stack.traffic(ERRORS_TENANT, 320)          # 11 of 362 requests: 3 % < 5 %
    await until(lambda: arrived(resolved), "both resolved notifications at the webhook",
                timeout_s=60)
    await _resent(stack, ("prometheus",))            # ragward posts a resolution only once
    counts = _arrivals(stack.webhook, pager)
    assert all(counts[key] == 1 for key in firing | resolved), counts
    assert not any(key[1] == HEALTHY_TENANT for key in counts), counts


async def _resent(stack: Stack, senders: tuple[str, ...]) -> None:
    """Wait until every alert has been posted again by ``senders``: two resend intervals
    have passed and each sender posted since (the only way to show that a repeat does not
    reach the receiver is to let the repeat happen)."""
    before, since = await _reposts(stack), time.monotonic()

    async def resent() -> bool:
        now = await _reposts(stack)
        return (time.monotonic() - since >= 2 * RESEND_S
                and all(now[s] > before[s] for s in senders))

    await until(resent, f"{' and '.join(senders)} to post again")


async def _reposts(stack: Stack) -> dict[str, float]:
    """How many times each sender has posted to Alertmanager so far."""
    prometheus = await stack.scrape(stack.prometheus)
    ragward = await stack.scrape(stack.consumers["ragward-consumer-alerts"])
    sent = sum(v for (name, _), v in prometheus.items()
               if name == "prometheus_notifications_sent_total")
    forwarded = ragward.get(("ragward_alert_notifications_total",
                             frozenset({("receiver", "alertmanager"), ("outcome", "success")})),
                            0.0)
    return {"prometheus": sent, "ragward": forwarded}
