"""OpenTelemetry traces across real processes: `ragward gateway` + `ragward rag-core`
(the openai backend against tests/openai_server.py) + `ragward consumer audit`, over real
Kafka and Redis, exporting over OTLP/HTTP to a real receiver that decodes the
``opentelemetry-proto`` messages (tests/otlp_receiver.py)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from rag_core.configuration import ingest_config
from rag_core.ingest import ingest
from ragward.devservices import free_port
from ragward.settings import load_settings
from telemetry.audit_store import open_store
from telemetry.audit_store.query import AuditQuery
from telemetry.configuration import audit_store_config
from tests.conftest import TEST_SECRET
from tests.gateway_harness import make_token
from tests.integration.test_gateway_processes import ragward_process as process
from tests.integration.test_gateway_processes import wait_healthy
from tests.integration.test_rag_openai import EMBEDDING, MODEL
from tests.openai_server import OpenAIStub
from tests.otlp_receiver import ReceivedSpan, wait_for_spans
from tests.receivers import HttpReceiver

PII = ["jane.doe@example.com", "4111 1111 1111 1111", "13812345678"]
QUESTION = f"How do I submit an expense claim? I am {PII[0]}, card {PII[1]}, phone {PII[2]}"
CONSUMER_GROUP = "ragward-audit"


@dataclass
class Stack:
    gateway: str
    receiver: HttpReceiver
    logs: dict[str, Path]
    audit_dir: Path


@pytest.fixture(scope="module")
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(dim=64) as server:
        yield server


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str, redis_url: str,
                stub: OpenAIStub) -> AsyncIterator[Stack]:
    root = tmp_path_factory.mktemp("tracing-processes")
    unique = uuid.uuid4().hex[:10]
    openai_env = {"RAGWARD_LLM": "openai", "OPENAI_BASE_URL": stub.base_url,
                  "OPENAI_API_KEY": "sk-test-not-a-real-key", "RAGWARD_OPENAI_MODEL": MODEL,
                  "RAGWARD_OPENAI_EMBEDDING_MODEL": EMBEDDING}
    rag = load_settings(data_dir=root / "rag", llm="openai", openai_base_url=stub.base_url,
                        openai_api_key="sk-test-not-a-real-key", openai_model=MODEL,
                        openai_embedding_model=EMBEDDING)
    ingest(ingest_config(rag), [], sample=True, show_progress=False)
    receiver = await HttpReceiver().start()
    rag_port, gw_port, audit_port = free_port(), free_port(), free_port()
    common = {
        "RAGWARD_TRACING": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url(""),
        "OTEL_BSP_SCHEDULE_DELAY": "50",  # export within 50 ms, not the default 5 s
        "RAGWARD_INTERNAL_TOKEN": "internal-" + unique, "RAGWARD_LOG_LEVEL": "debug",
        "RAGWARD_KAFKA_BOOTSTRAP": kafka_bootstrap, "RAGWARD_TOPIC_AUDIT": f"tr.audit.{unique}",
        "RAGWARD_TOPIC_USAGE": f"tr.usage.{unique}",
    }
    logs = {name: root / f"{name}.log" for name in ("rag", "gw", "audit")}
    rag_env = {**common, **openai_env, "RAGWARD_DATA_DIR": str(root / "rag")}
    gw_env = {**common, "RAGWARD_DATA_DIR": str(root / "gw"), "RAGWARD_JWT_SECRET": TEST_SECRET,
              "RAGWARD_RAG_CORE_URL": f"http://127.0.0.1:{rag_port}",
              "RAGWARD_REDIS_URL": redis_url, "RAGWARD_TRACING_REDACTED_TEXT": "true"}
    audit_env = {**common, "RAGWARD_DATA_DIR": str(root / "audit"), "RAGWARD_AUDIT_DSN": ""}
    try:
        with process(["rag-core", "--port", str(rag_port)], rag_env, logs["rag"]) as rag, \
             process(["gateway", "--port", str(gw_port)], gw_env, logs["gw"]) as gw, \
             process(["consumer", "audit", "--port", str(audit_port)], audit_env,
                     logs["audit"]) as audit:
            # three processes starting at once on a shared 2-core machine: allow them time
            await wait_healthy(f"http://127.0.0.1:{rag_port}", rag, logs["rag"], within_s=120)
            await wait_healthy(f"http://127.0.0.1:{audit_port}", audit, logs["audit"],
                               within_s=120)
            url = f"http://127.0.0.1:{gw_port}"
            await wait_healthy(url, gw, logs["gw"], within_s=120)
            yield Stack(url, receiver, logs, root / "audit")
    finally:
        await receiver.stop()


def traceparent() -> tuple[str, str, str]:
    trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    return trace_id, parent, f"00-{trace_id}-{parent}-01"


def one(spans: list[ReceivedSpan], service: str, name: str,
        kind: str | None = None) -> ReceivedSpan:
    found = [s for s in spans if s.service == service and s.name == name
             and kind in (None, s.kind)]
    assert len(found) == 1, (service, name, kind, [(s.service, s.name, s.kind) for s in spans])
    return found[0]


def complete(trace_id: str) -> Any:
    """Whether the trace's last spans arrived: the audit consumer's, and the server span
    of the gateway and of rag_core (each process exports in batches, and a server span
    ends after its children, so it may come in a later batch; a stream's gateway span
    ends after its closing audit event was published)."""
    def done(spans: list[ReceivedSpan]) -> bool:
        ours = [s for s in spans if s.trace_id == trace_id]
        servers = {s.service for s in ours if s.kind == "server"}
        return (any(s.kind == "consumer" for s in ours)
                and {"ragward-gateway", "ragward-rag-core"} <= servers)
    return done


async def audit_record(audit_dir: Path, request_id: str) -> dict[str, Any]:
    store = open_store(audit_store_config(load_settings(data_dir=audit_dir)))
    try:
        records = (await store.query(AuditQuery(request_id=request_id))).records
    finally:
        await store.close()
    assert len(records) == 1
    record: dict[str, Any] = records[0]
    return record


def log_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


async def query(stack: Stack, header: str, question: str = QUESTION) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            stack.gateway + "/v1/query", json={"question": question},
            headers={"Authorization": f"Bearer {make_token(tenant='traced')}",
                     "traceparent": header, "tracestate": "vendor=opaque"})
    assert response.status_code == 200, response.text
    return response


async def test_one_request_is_one_trace_across_gateway_rag_core_and_audit_consumer(
    stack: Stack,
) -> None:
    """A request with a client traceparent: the gateway's server span continues it, with
    children for authentication, authorisation, redaction, quota, cache, the forwarding
    client span and the durable audit publish; rag_core's server span is the forwarding
    span's child, with retrieval and synthesis, the LLM call under synthesis carrying the
    GenAI attributes; the audit consumer's span is the audit publish span's child and
    linked to it. The audit record and the log lines of gateway and rag_core carry the
    same trace id."""
    trace_id, parent, header = traceparent()
    response = await query(stack, header)
    spans = [s for s in await wait_for_spans(stack.receiver, complete(trace_id))
             if s.trace_id == trace_id]

    gateway = one(spans, "ragward-gateway", "POST /v1/query", "server")
    assert (gateway.kind, gateway.parent_span_id) == ("server", parent)
    assert gateway.attributes["http.route"] == "/v1/query"
    assert gateway.attributes["http.response.status_code"] == 200
    children = {s.name: s for s in spans
                if s.service == "ragward-gateway" and s.parent_span_id == gateway.span_id}
    assert set(children) == {"authenticate", "authorise", "redact", "quota", "cache",
                             "POST /v1/query", "redact answer", "audit publish"}
    forward, publish = children["POST /v1/query"], children["audit publish"]
    assert (forward.kind, publish.kind) == ("client", "producer")

    rag = one(spans, "ragward-rag-core", "POST /v1/query", "server")
    assert (rag.kind, rag.parent_span_id) == ("server", forward.span_id)
    retrieve = one(spans, "ragward-rag-core", "retrieve")
    synthesize = one(spans, "ragward-rag-core", "synthesize")
    llm = one(spans, "ragward-rag-core", f"chat {MODEL}")
    assert retrieve.parent_span_id == rag.span_id == synthesize.parent_span_id
    assert (llm.kind, llm.parent_span_id) == ("client", synthesize.span_id)
    usage = response.json()["usage"]
    assert llm.attributes == {
        "gen_ai.operation.name": "chat", "gen_ai.system": "openai",
        "gen_ai.provider.name": "openai", "gen_ai.request.model": MODEL,
        "gen_ai.usage.input_tokens": usage["prompt_tokens"],
        "gen_ai.usage.output_tokens": usage["completion_tokens"],
    }
    assert usage["completion_tokens"] > 0

    consumer = one(spans, "ragward-consumer-audit", f"{CONSUMER_GROUP} process")
    assert consumer.kind == "consumer" and consumer.parent_span_id == publish.span_id
    assert consumer.links == [(trace_id, publish.span_id)]
    assert consumer.attributes["messaging.batch.message_count"] == 1

    request_id = response.headers["x-request-id"]
    assert (await audit_record(stack.audit_dir, request_id))["trace_id"] == trace_id
    request_line = [line for line in log_lines(stack.logs["gw"])
                    if line.get("event") == "request" and line.get("trace_id") == trace_id]
    assert len(request_line) == 1 and request_line[0]["span_id"] == gateway.span_id
    assert any(line.get("event") == "query_answered" and line.get("trace_id") == trace_id
               for line in log_lines(stack.logs["rag"]))


async def test_no_span_attribute_holds_a_raw_pii_value_of_the_question(stack: Stack) -> None:
    """With the redacted text allowed on spans (RAGWARD_TRACING_REDACTED_TEXT=true), the
    question reaches the redact span only as placeholders: no attribute of any span, in
    any process, holds one of the raw PII values sent (nor their digits alone)."""
    trace_id, _, header = traceparent()
    await query(stack, header)
    spans = [s for s in await wait_for_spans(stack.receiver, complete(trace_id))
             if s.trace_id == trace_id]
    assert len({s.service for s in spans}) == 3
    values = json.dumps([s.attributes for s in spans], ensure_ascii=False)
    for raw in PII:
        assert raw not in values
        assert raw.replace(" ", "") not in values
    redact = one(spans, "ragward-gateway", "redact")
    [redacted] = redact.attributes["ragward.question.redacted"]
    assert "<EMAIL_1>" in redacted and "How do I submit an expense claim?" in redacted
    assert redact.attributes["ragward.redactions.EMAIL"] == 1


async def test_streamed_chat_llm_span_has_time_to_first_token(stack: Stack) -> None:
    """The streamed chat path is traced too: gateway server span → forwarding client span
    → rag_core's stream, whose LLM span carries the GenAI attributes and the time to the
    first chunk."""
    trace_id, parent, header = traceparent()
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            stack.gateway + "/v1/chat/completions",
            json={"model": "default", "stream": True,
                  "messages": [{"role": "user", "content": "How do I submit an expense claim?"}]},
            headers={"Authorization": f"Bearer {make_token(tenant='traced')}",
                     "traceparent": header})
    assert response.status_code == 200 and "data: [DONE]" in response.text
    spans = [s for s in await wait_for_spans(stack.receiver, complete(trace_id))
             if s.trace_id == trace_id]
    gateway = one(spans, "ragward-gateway", "POST /v1/chat/completions")
    assert gateway.parent_span_id == parent
    forward = one(spans, "ragward-gateway", "POST /v1/chat/stream")
    rag = one(spans, "ragward-rag-core", "POST /v1/chat/stream")
    llm = one(spans, "ragward-rag-core", f"chat {MODEL}")
    assert forward.parent_span_id == gateway.span_id and rag.parent_span_id == forward.span_id
    assert llm.parent_span_id == rag.span_id
    assert llm.attributes["gen_ai.system"] == "openai"
    assert llm.attributes["gen_ai.usage.output_tokens"] > 0
    assert 0 < llm.attributes["gen_ai.response.time_to_first_chunk"] < 10
    assert llm.attributes["gen_ai.response.finish_reasons"] == ["stop"]
