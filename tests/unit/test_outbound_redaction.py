"""Everything rag_core sends passes the redactor before it leaves the gateway."""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.pii import Redactor
from gateway.pipeline import redact_outbound
from rag_core.schemas import QueryResponse, Source, Usage

EMAIL = "jane.doe@example.com"


def _fill(cls: type[msgspec.Struct], overrides: dict[str, Any]) -> dict[str, Any]:
    """Every str field of ``cls`` holding PII (the rest from ``overrides``), found by
    introspection: a string field added to the shape later is filled too."""
    values = dict(overrides)
    for field in msgspec.structs.fields(cls):
        if field.type is str and field.name not in values:
            values[field.name] = f"{field.name} of {EMAIL}"
    return values


def test_every_string_field_and_nested_metadata_is_redacted() -> None:
    """Answer, source id and text, metadata keys and values at any depth (lists, nested
    objects): no raw address survives; numbers and the gateway's request id are kept."""
    metadata = {"title": f"Escalations {EMAIL}", "header_path": f"/{EMAIL}/Contacts",
                "file_name": f"{EMAIL}.md", f"{EMAIL}": 1,
                "authors": [EMAIL, {"mail": EMAIL}], "page_label": 7}
    source = Source(**_fill(Source, {"score": 0.5, "metadata": metadata}))
    answer = QueryResponse(**_fill(QueryResponse, {"sources": [source, source],
                                                   "usage": Usage(total_tokens=3),
                                                   "request_id": "upstream-id"}))
    clean = redact_outbound(answer, Redactor().session(), "rid-1")
    encoded = msgspec.json.encode(clean).decode()
    assert EMAIL not in encoded and "example.com" not in encoded
    assert clean.answer == "answer of <EMAIL_1>" and clean.sources[1].id == "id of <EMAIL_1>"
    assert clean.request_id == "rid-1" and clean.cached is False
    assert clean.usage.total_tokens == 3 and clean.sources[0].score == 0.5
    assert clean.sources[0].metadata["page_label"] == 7
    assert clean.sources[0].metadata["authors"][1] == {"mail": "<EMAIL_1>"}
