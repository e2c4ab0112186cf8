"""Conversation handling in rag_core (rag_core.chat): bounded memory, condensed search text."""

from __future__ import annotations

import pytest

from rag_core.chat import conversation, cut_at_stop, cut_to_tokens
from rag_core.schemas import ChatTurn
from ragward.errors import ValidationFailed


def words(text: str) -> int:
    return len(text.split())


def turns(n: int) -> list[ChatTurn]:
    out = []
    for i in range(n):
        out += [ChatTurn(role="user", content=f"question {i} " + "pad " * 8),
                ChatTurn(role="assistant", content=f"answer {i} " + "pad " * 8)]
    return out


def test_memory_keeps_the_newest_turns_within_the_token_budget() -> None:
    """Oldest turns go first; what stays fits the budget however long the history is."""
    conv = conversation([*turns(500), ChatTurn(role="user", content="and now?")],
                        memory_tokens=100, count=words)
    assert 0 < sum(words(m.content or "") for m in conv.memory) <= 100
    assert conv.memory[-1].content is not None and conv.memory[-1].content.startswith("answer 499")
    assert conv.memory[0].role.value == "user"  # never starts on an assistant turn
    assert conv.question == "and now?"


def test_no_memory_budget_means_no_memory() -> None:
    """RAGWARD_CHAT_MEMORY_TOKENS=0 answers the question alone."""
    conv = conversation([*turns(3), ChatTurn(role="user", content="q")], memory_tokens=0,
                        count=words)
    assert conv.memory == [] and conv.retrieval_query == "q"


def test_a_follow_up_is_condensed_with_the_user_turns_before_it() -> None:
    """The search text is the question with the preceding user turns (not the answers),
    newest first, within its own small budget."""
    history = [ChatTurn(role="user", content="What is the annual leave policy?"),
               ChatTurn(role="assistant", content="Fifteen days."),
               ChatTurn(role="user", content="And for contractors?")]
    conv = conversation(history, memory_tokens=1000, count=words)
    assert conv.retrieval_query == "What is the annual leave policy?\nAnd for contractors?"


def test_the_last_turn_must_be_the_users() -> None:
    """A conversation that does not end on a user question is refused (422/400)."""
    with pytest.raises(ValidationFailed):
        conversation([ChatTurn(role="assistant", content="x")], memory_tokens=10, count=words)


def test_cut_to_tokens_ends_at_a_word_within_the_cap() -> None:
    """max_tokens on the local backend: the longest word-bounded prefix that fits."""
    assert cut_to_tokens("one two three four", 2, words) == "one two"
    assert cut_to_tokens("one two", None, words) == "one two"
    assert cut_to_tokens("one two", 5, words) == "one two"


def test_cut_at_stop_ends_before_the_earliest_sequence() -> None:
    """OpenAI's ``stop``: the earliest of the sequences ends the text and is left out;
    empty sequences and absent ones change nothing."""
    assert cut_at_stop("alpha beta gamma", ["gamma", "beta"]) == "alpha "
    assert cut_at_stop("alpha beta", ["", "zeta"]) == "alpha beta"
    assert cut_at_stop("alpha beta", []) == "alpha beta"
    assert cut_at_stop("报销需要发票。其余", ["。"]) == "报销需要发票"
