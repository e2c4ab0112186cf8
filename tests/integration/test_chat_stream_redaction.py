"""Split PII end to end, on both scanners: whatever way the LLM cuts its answer, the
client gets exactly the full-text redaction, and never a part of an entity before it.

gateway → rag_core (HTTP, NDJSON) → the openai backend → the OpenAI-compatible test
server, which streams a scripted answer in scripted pieces (``OpenAIStub.chunks``),
on real Redis. Answers hold every entity type (the unit stream test's ``ENTITIES``,
English and Chinese, full-width forms, cues and decoys), cut at every position: one
character per chunk, every boundary inside each entity, random cuttings, and
hypothesis on generated answers. For every stream, on the native scanner and on the
Python reference (each handed to the gateway):

(a) the concatenated ``delta.content`` equals the redaction of the whole answer
    (``RedactionSession.redact``, not the stream) in a session in the gateway's state:
    the index these tests ingest has no PII, so its sources number nothing and the
    answer's placeholders start at 1 (the sources' citations are checked for that);
(b) after every chunk, what the client holds is a prefix of that redaction: no raw
    entity, and no part of one, has reached it.

About 57 streams per scanner: 111 s for the file (53 s in the streams, the rest
services, ingest and start-up) measured on the shared 2-core machine at a load
average of 18; the count of streams is what to tune (the constants below).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings

from gateway.pii import Redactor, Scanner
from rag_core.configuration import ingest_config
from rag_core.ingest import ingest
from tests.gateway_harness import RunningGateway, gateway_settings, running_gateway
from tests.integration.test_chat_streaming import rag_core_url as rag_core_url
from tests.integration.test_chat_streaming import rag_settings, stream_chat
from tests.integration.test_chat_streaming import stub as stub
from tests.openai_server import OpenAIStub
from tests.unit.test_redaction_stream import ENTITIES, answer_and_cuts

# Run time is bounded by the number of streams: each is a real request through the
# gateway, rag_core and the stub. Derandomised, so a failure reproduces.
HYPOTHESIS_EXAMPLES = 25
RANDOM_CUTTINGS = 6
# Every entity in a sentence of its own: the boundary cases cut every one at once.
LAYOUT = "Hello, here: {} and more text. "
HANDBOOK = """# Expense claims

Submit an expense claim in the finance portal within thirty days of the purchase.
Attach the receipt and name the project the cost belongs to. Your manager approves
the claim, and the refund is paid with the next salary.
"""


# ``stub`` and ``rag_core_url`` are the streaming tests' fixtures, imported: this module
# gets its own instances, and rag_core_url serves the data_dir below (a fixture's
# arguments are looked up where it is used).
@pytest.fixture(scope="module")
def data_dir(stub: OpenAIStub, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index without PII, so the sources the gateway redacts number nothing."""
    data = tmp_path_factory.mktemp("stream-redaction")
    docs = data / "docs"
    docs.mkdir()
    (docs / "expenses.md").write_text(HANDBOOK, encoding="utf-8")
    ingest(ingest_config(rag_settings(data, stub)), [docs], None, show_progress=False)
    return data


@pytest.fixture
def scripted(stub: OpenAIStub) -> Iterator[OpenAIStub]:
    stub.clear()
    yield stub
    stub.clear()
    stub.chunks = None


@pytest.fixture
async def gateway(
    tmp_path: Path, rag_core_url: str, redis_url: str, pii_scanner: Scanner
) -> AsyncIterator[RunningGateway]:
    """A gateway on one scanner (each in turn), its cache off: every stream is answered."""
    settings = gateway_settings(tmp_path, rag_core_url, redis_url=redis_url,
                                cache_enabled=False)
    async with running_gateway(settings, pii_scanner=pii_scanner) as gw:
        yield gw


def pieces_of(text: str, cuts: list[int]) -> list[str]:
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(text)}), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


async def assert_exact(gw: RunningGateway, stub: OpenAIStub, scanner: Scanner,
                       text: str, cuts: list[int]) -> None:
    """Stream ``text`` cut at ``cuts`` through the gateway; (a) and (b) above."""
    stub.chunks = pieces_of(text, cuts)
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    streamed = await stream_chat(gw, tenant)
    assert streamed.status == 200 and streamed.done, streamed.lines[-3:]
    whole = Redactor(scanner=scanner).session().redact(text, enforce_block=False).text
    hidden = [text[s.start:s.end] for s in Redactor(scanner=scanner).find(text)]
    hidden = [raw for raw in hidden if raw not in whole]
    received = ""
    cited = 0
    for chunk in streamed.chunks:
        for citation in chunk.get("citations") or []:
            assert "<" not in citation["snippet"], citation  # the sources number nothing
            cited += 1
        if chunk.get("choices"):
            received += chunk["choices"][0]["delta"].get("content") or ""
            assert whole.startswith(received), (text, cuts, received, whole)
            assert not any(raw in received for raw in hidden), (text, cuts, received)
    assert received == whole, (text, cuts)
    assert cited, "the sources went out with the last content chunk"


ANSWER = "".join(LAYOUT.format(value) for value in ENTITIES)
STARTS = [ANSWER.index(LAYOUT.format(v)) + LAYOUT.index("{}") for v in ENTITIES]


async def test_one_character_chunks(
    gateway: RunningGateway, scripted: OpenAIStub, pii_scanner: Scanner
) -> None:
    """An answer with every entity type, one character per upstream chunk (every entity
    split at every position in one stream)."""
    await assert_exact(gateway, scripted, pii_scanner, ANSWER, list(range(1, len(ANSWER))))


async def test_every_boundary_inside_each_entity(
    gateway: RunningGateway, scripted: OpenAIStub, pii_scanner: Scanner
) -> None:
    """Every entity of the answer cut k characters after its start, for every k from
    just before the entity to just after it: each entity is cut at each of its
    boundaries in some stream. A stream cuts at two offsets, k and k + half the longest
    entity, and every entity at once, so the streams are few."""
    half = (max(map(len, ENTITIES)) + 3) // 2
    for k in range(-1, half - 1):
        cuts = [start + offset for start, value in zip(STARTS, ENTITIES, strict=True)
                for offset in (k, k + half) if offset <= len(value) + 1]
        await assert_exact(gateway, scripted, pii_scanner, ANSWER, cuts)


async def test_random_chunkings(
    gateway: RunningGateway, scripted: OpenAIStub, pii_scanner: Scanner
) -> None:
    """The answer in random pieces of 1-8 characters, the size of LLM tokens."""
    rng = random.Random(17)
    for _ in range(RANDOM_CUTTINGS):
        cuts, at = [], 0
        while at < len(ANSWER):
            at += rng.randint(1, 8)
            cuts.append(at)
        await assert_exact(gateway, scripted, pii_scanner, ANSWER, cuts)


async def test_generated_answers(
    gateway: RunningGateway, scripted: OpenAIStub, pii_scanner: Scanner
) -> None:
    """Hypothesis on generated answers (entities, decoys, glue: cues, labels, Chinese,
    full-width and expanding characters) cut at generated places. Hypothesis runs in a
    thread and hands each stream to this test's event loop, where the gateway runs."""
    loop = asyncio.get_running_loop()

    @settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None, derandomize=True,
              database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(answer_and_cuts())
    def check(case: tuple[str, list[int]]) -> None:
        text, cuts = case
        assume(text.strip())
        future = asyncio.run_coroutine_threadsafe(
            assert_exact(gateway, scripted, pii_scanner, text, cuts), loop)
        future.result(timeout=60)

    await asyncio.to_thread(check)
