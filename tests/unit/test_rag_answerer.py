
"""The extractive answerer: the right sentences, in document order, from the prompt."""

from __future__ import annotations

from rag_core.answerer import NO_ANSWER_EN, NO_ANSWER_ZH, QA_PROMPT, ExtractiveLLM, parse_prompt

CONTEXT = """## Entitlement

Full-time employees receive 25 days of paid annual leave per year.
Part-time employees receive a pro-rated entitlement.

## How to submit an expense claim

1. Log in to Expensify.
2. Create a new report.
3. Submit the report within 30 days.

## 年假天数

正式员工每年享有 15 天带薪年假。累计工作满 10 年的员工享有 20 天。"""


def _ask(question: str, context: str = CONTEXT) -> str:
    llm = ExtractiveLLM()
    prompt = QA_PROMPT.format(context_str=context, query_str=question)
    return llm.complete(prompt).text


def test_prompt_round_trips() -> None:
    """The answerer reads back exactly the context and question the synthesizer put in."""
    prompt = QA_PROMPT.format(context_str="a\nb", query_str="why?")
    assert parse_prompt(prompt) == ("a\nb", "why?")


def test_fact_question_gets_the_matching_sentence() -> None:
    """A factual question is answered by the sentence that holds the fact."""
    assert "25 days" in _ask("How many days of annual leave do full-time employees get?")


def test_procedural_question_gets_the_section_steps() -> None:
    """'How do I …' matching a heading answers with that section's steps, in order."""
    answer = _ask("How do I submit an expense claim?")
    assert answer.index("Log in") < answer.index("Create a new report") < answer.index("30 days")


def test_chinese_question_gets_chinese_sentence() -> None:
    """Chinese sentences are joined without spaces and carry the figure asked about."""
    answer = _ask("工作满十年的员工有几天年假？")
    assert "20 天" in answer
    assert "Expensify" not in answer


def test_unrelated_question_says_it_does_not_know() -> None:
    """No overlap with the context gives an honest 'not found', in the question's language."""
    assert _ask("What is the capital of Peru?") == NO_ANSWER_EN
    assert _ask("火星上有几个卫星？") == NO_ANSWER_ZH


def test_async_complete_fires_one_llm_event() -> None:
    """acomplete must not delegate to complete: that would count the tokens twice."""
    import asyncio

    from llama_index.core.callbacks import CallbackManager, TokenCountingHandler

    counter = TokenCountingHandler()
    llm = ExtractiveLLM(callback_manager=CallbackManager([counter]))
    asyncio.run(llm.acomplete(QA_PROMPT.format(context_str=CONTEXT, query_str="annual leave?")))
    assert len(counter.llm_token_counts) == 1
