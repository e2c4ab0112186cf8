"""The local backend's answerer: an extractive LlamaIndex ``CustomLLM``.

It receives the same prompt an LLM would (``QA_PROMPT`` filled in by the response
synthesizer), reads the context and the question back out of it, and answers
with the context sentences that best match the question, in document order.
Because it sits behind the normal synthesizer, the query path, the callback
events and therefore token counting are the same for the local and the OpenAI
backends.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from llama_index.core.base.llms.types import (
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from llama_index.core.prompts import PromptTemplate

from rag_core.embedding import SparseVector, coverage, hashed_features, sparse_dot
from rag_core.text import has_cjk, heading_level, split_sentences, strip_markup

CONTEXT_OPEN, CONTEXT_CLOSE = "<context>", "</context>"
QUESTION_MARK = "\nQuestion: "
ANSWER_MARK = "\nAnswer:"

QA_PROMPT = PromptTemplate(
    "You answer questions about the company handbook using only the context below.\n"
    "If the context does not contain the answer, say that you do not know.\n"
    "Answer in the language of the question.\n"
    f"{CONTEXT_OPEN}\n{{context_str}}\n{CONTEXT_CLOSE}"
    f"{QUESTION_MARK}{{query_str}}{ANSWER_MARK}"
)
CJK_PUNCTUATION = "\u3002\uff01\uff1f\uff1b\uff1a"  # full-width . ! ? ; :
NO_ANSWER_EN = "I could not find an answer to that in the indexed documents."
NO_ANSWER_ZH = "在已索引的文档中没有找到相关答案。"


def parse_prompt(prompt: str) -> tuple[str, str]:
    """(context, question) back out of a QA_PROMPT text."""
    start = prompt.find(CONTEXT_OPEN + "\n")
    end = prompt.rfind("\n" + CONTEXT_CLOSE)
    context = prompt[start + len(CONTEXT_OPEN) + 1 : end] if 0 <= start < end else ""
    q_at = prompt.rfind(QUESTION_MARK)
    question = prompt[q_at + len(QUESTION_MARK) :] if q_at >= 0 else prompt
    if question.endswith(ANSWER_MARK):
        question = question[: -len(ANSWER_MARK)]
    return context, question.strip()


def _budget(
    items: list[tuple[float, int, str, int, bool]], max_items: int, max_chars: int
) -> list[tuple[float, int, str, int, bool]]:
    chosen: list[tuple[float, int, str, int, bool]] = []
    used = 0
    for item in items[:max_items]:
        if chosen and used + len(item[2]) > max_chars:
            break
        chosen.append(item)
        used += len(item[2])
    return chosen


def _join(sentences: list[str]) -> str:
    """Chinese sentences run on; English ones get a space (or a newline for list steps)."""
    parts: list[str] = []
    for sentence in sentences:
        if parts:
            last = parts[-1][-1:]
            if not (has_cjk(last) or last in CJK_PUNCTUATION or has_cjk(sentence[:1])):
                parts.append(" ")
        parts.append(sentence)
    return "".join(parts)


class ExtractiveLLM(CustomLLM):
    """Answers with the context sentences most similar to the question (no model)."""

    dim: int = Field(default=8192, description="Hash buckets of the sentence features.")
    max_sentences: int = Field(default=3, ge=1)
    relative_cutoff: float = Field(
        default=0.6, description="Keep sentences scoring at least this share of the best."
    )
    min_score: float = Field(default=0.05, description="Below this nothing counts as an answer.")
    heading_coverage: float = Field(
        default=0.75,
        description="A heading answers with its section when it has this share of the question.",
    )
    heading_boost: float = Field(
        default=0.3, description="Share of its section heading's score a sentence inherits."
    )
    max_section_sentences: int = Field(default=6, ge=1)
    max_answer_chars: int = Field(default=700, ge=50)
    model_name: str = Field(default="local-extractive")
    context_window: int = Field(default=32768)

    _features: Any = PrivateAttr()
    _cache_size: int = PrivateAttr(default=8192)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._features = OrderedDict()

    @classmethod
    def class_name(cls) -> str:
        return "ExtractiveLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self.context_window,
            num_output=256,
            is_chat_model=False,
            model_name=self.model_name,
        )

    def _sentence_features(self, sentence: str) -> SparseVector:
        """Features of a context sentence; the corpus repeats, so keep a bounded LRU."""
        cache: OrderedDict[str, SparseVector] = self._features
        hit = cache.get(sentence)
        if hit is not None:
            cache.move_to_end(sentence)
            return hit
        value = hashed_features(sentence, self.dim)
        cache[sentence] = value
        if len(cache) > self._cache_size:
            cache.popitem(last=False)
        return value

    def _score(self, query: SparseVector, sentence: str) -> float:
        """Cosine favours short sentences, coverage long ones; blend them."""
        if not query:
            return 0.0
        features = self._sentence_features(sentence)
        return 0.5 * sparse_dot(query, features) + 0.5 * coverage(query, features)

    def answer(self, context: str, question: str) -> str:
        """The best-matching sentences, or the body of the best-matching section.

        Procedural questions ("how do I submit a claim?") are usually answered
        by the steps under a matching heading rather than by any one sentence,
        so a heading that matches at least as well as the best sentence brings
        its section's sentences. A lone sentence brings its successor along,
        since a definition is usually followed by its figures.
        """
        query = hashed_features(question, self.dim)
        english_question = not has_cjk(question)
        # (score, position, text, section, is_heading)
        items: list[tuple[float, int, str, int, bool]] = []
        seen: set[str] = set()
        section = 0
        for position, raw in enumerate(split_sentences(context)):
            level = heading_level(raw)
            heading = level > 1  # a document title names the topic, not an answer
            sentence = strip_markup(raw)
            if level:
                section += 1
            if level == 1 or len(sentence) < 2 or (not heading and sentence in seen):
                continue
            if english_question and has_cjk(sentence):
                continue  # hashed features of other scripts only ever match by collision
            seen.add(sentence)
            score = self._score(query, sentence)
            items.append((score, position, sentence, section, heading))
        # A sentence under a matching heading is more likely the answer ("Arrive at
        # 09:30" under "Your first day" for "when do I arrive on my first day?").
        heading_scores = {i[3]: i[0] for i in items if i[4]}
        sentences = [
            (i[0] + self.heading_boost * heading_scores.get(i[3], 0.0), *i[1:])
            for i in items
            if not i[4]
        ]
        best = max((i[0] for i in sentences), default=0.0)
        best_heading = max((i for i in items if i[4]), default=None, key=lambda i: i[0])
        if max(best, best_heading[0] if best_heading else 0.0) < self.min_score:
            return NO_ANSWER_ZH if has_cjk(question) else NO_ANSWER_EN
        if (
            best_heading is not None
            and best_heading[0] >= best
            and coverage(query, self._sentence_features(best_heading[2])) >= self.heading_coverage
        ):
            body = [i for i in sentences if i[3] == best_heading[3]]
            chosen = _budget(body, self.max_section_sentences, self.max_answer_chars)
            if chosen:
                return _join([i[2] for i in chosen])
        ranked = sorted(
            (i for i in sentences if i[0] >= best * self.relative_cutoff), key=lambda i: -i[0]
        )[: self.max_sentences]
        if len(ranked) == 1:
            top = ranked[0]
            follower = next(
                (i for i in sentences if i[1] > top[1] and i[3] == top[3]), None
            )
            if follower is not None:
                ranked.append(follower)
        ranked.sort(key=lambda i: i[1])
        return _join([i[2] for i in ranked])

    def _respond(self, prompt: str) -> CompletionResponse:
        context, question = parse_prompt(prompt)
        return CompletionResponse(text=self.answer(context, question))

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return self._respond(prompt)

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        # Not delegating to complete(): each call would fire its own LLM event and
        # the request's token count would double.
        return self._respond(prompt)

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        response = self._respond(prompt)

        def gen() -> CompletionResponseGen:
            yield response

        return gen()
