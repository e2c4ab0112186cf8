"""The JSON depth pre-scan (ragward.http_body) agrees with a real parse of the body."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from ragward.http_body import MAX_JSON_DEPTH, json_too_deep

# Strings full of the characters the scanner must not be fooled by.
tricky_text = st.text(alphabet=st.sampled_from('[]{}"\\,: ab\n'), max_size=12)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | tricky_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky_text, inner, max_size=3),
    max_leaves=40,
)


def depth(value: Any) -> int:
    """Nesting depth of arrays and objects, the reference the scanner must match."""
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


def nest(levels: int, leaf: Any) -> Any:
    for i in range(levels):
        leaf = [leaf] if i % 2 else {"k": leaf}
    return leaf


@settings(max_examples=400, deadline=None)
@given(value=values, extra=st.integers(min_value=0, max_value=40))
@example(value=nest(MAX_JSON_DEPTH, 1), extra=0)
@example(value=nest(MAX_JSON_DEPTH + 1, 1), extra=0)
def test_the_scan_is_exact_for_well_formed_json(value: Any, extra: int) -> None:
    """For any JSON value (strings holding brackets, quotes and escapes included), the
    scan says "too deep" exactly when the parsed value nests deeper than the limit."""
    value = nest(extra, value)
    body = json.dumps(value, ensure_ascii=False).encode()
    assert json_too_deep(body) == (depth(value) > MAX_JSON_DEPTH)


def test_the_reported_attack_and_its_variants_are_too_deep() -> None:
    """100,000 arrays, objects, or both interleaved: too deep, found without recursion."""
    assert json_too_deep(b"[" * 100_000 + b"]" * 100_000)
    assert json_too_deep(b'{"a":' * 100_000)
    assert json_too_deep(b'{"question":' + b"[{" * 50_000)
    assert not json_too_deep(b'{"question": "' + b"[" * 100_000 + b'"}')
