"""The OpenAI request mapping (gateway.openai.wire): what is accepted, what is refused."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.openai.wire import chunk_object, parse_chat_request
from rag_core.schemas import Usage
from ragward.errors import ValidationFailed

USER = [{"role": "user", "content": "hi there"}]


def test_supported_fields_are_mapped() -> None:
    """model → index (with or without the ragward/ prefix), max_completion_tokens wins
    over max_tokens, stop as a string becomes a list, text parts are joined, developer
    is a system turn, and harmless knobs (seed, penalties, user) are accepted."""
    chat = parse_chat_request({
        "model": "ragward/handbook", "stream": True,
        "stream_options": {"include_usage": True}, "max_tokens": 10,
        "max_completion_tokens": 20, "temperature": 0.2, "top_p": 0.9, "stop": "END",
        "seed": 1, "presence_penalty": 0.5, "user": "u-1", "n": 1, "tools": [],
        "response_format": {"type": "text"},
        "messages": [{"role": "developer", "content": "be brief"},
                     {"role": "user", "content": [{"type": "text", "text": "a"},
                                                  {"type": "text", "text": "b"}]}],
    })
    assert (chat.index, chat.model) == ("handbook", "ragward/handbook")
    assert chat.stream and chat.include_usage and chat.max_tokens == 20
    assert chat.stop == ["END"] and chat.temperature == 0.2 and chat.top_p == 0.9
    assert [(t.role, t.content) for t in chat.messages] == [("system", "be brief"),
                                                            ("user", "ab")]


@pytest.mark.parametrize(("body", "param"), [
    ({"n": 3}, "n"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"stream": "yes"}, "stream"),
    ({"top_p": 2}, "top_p"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"top_k": 50}, "top_k"),
    ({"logit_bias": {"1": 5}}, "logit_bias"),
    ({"model": ""}, "model"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": None}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
     "messages[0].content[0].type"),
    ({"messages": [{"role": "user", "content": "  "}]}, "messages[0].content"),
])
def test_refused_requests_name_the_parameter(body: dict[str, Any], param: str) -> None:
    """Every refusal is a ValidationFailed whose field is the offending parameter."""
    with pytest.raises(ValidationFailed) as raised:
        parse_chat_request({"model": "default", "messages": USER, **body})
    assert raised.value.field == param


def test_usage_chunk_has_no_choices_and_content_chunks_have_one() -> None:
    """Clients index choices[0] on every chunk but the usage one (choices: [])."""
    usage = chunk_object(completion_id="c", created=1, model="m", delta=None, usage=Usage())
    content = chunk_object(completion_id="c", created=1, model="m", delta={"content": "x"})
    assert usage["choices"] == [] and "usage" in usage
    assert content["choices"][0]["delta"] == {"content": "x"} and "usage" not in content
