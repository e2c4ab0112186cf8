"""docs/events.md cannot drift from the event types."""

from __future__ import annotations

import json
import re

from telemetry import schema_doc
from telemetry.events import json_schemas

REGENERATE = (
    "docs/events.md is out of date: regenerate it with `.venv/bin/python -m telemetry.schema_doc`"
)


def test_documented_schemas_equal_the_generated_ones() -> None:
    """Every JSON Schema block in docs/events.md equals json_schemas() for its type, and
    every type has one."""
    text = schema_doc.DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"JSON Schema of `(\w+)`:\n\n```json\n(.*?)\n```", text, re.S)
    documented = {name: json.loads(body) for name, body in blocks}
    assert documented == json_schemas(), REGENERATE


def test_generated_part_is_up_to_date_and_every_field_has_a_meaning() -> None:
    """The field tables are current (`python -m telemetry.schema_doc --check`) and no field
    lacks its description."""
    assert schema_doc.main(["--check"]) == 0, REGENERATE
    assert schema_doc.undocumented_fields() == []
