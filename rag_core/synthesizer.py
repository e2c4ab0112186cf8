"""A single-pass response synthesizer: every retrieved chunk, one LLM call.

LlamaIndex's ``compact`` mode re-tokenizes and re-splits the context twice
(repack, then refine) even when it obviously fits; with ``top_k <= 20`` chunks
of at most 256 tokens it always fits any modern context window. This
synthesizer joins the chunks and only when the text could possibly exceed the
window (no character takes more than four tokens, so four times the character
count is a safe bound) asks the prompt helper to truncate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.callbacks import CallbackManager
from llama_index.core.indices.prompt_helper import PromptHelper
from llama_index.core.llms.llm import LLM
from llama_index.core.prompts import BasePromptTemplate
from llama_index.core.prompts.mixin import PromptDictType
from llama_index.core.response_synthesizers.base import BaseSynthesizer
from llama_index.core.types import RESPONSE_TEXT_TYPE

from rag_core.usage import current_usage
from ragward import tracing

CHUNK_SEPARATOR = "\n\n"


class SinglePassSynthesizer(BaseSynthesizer):
    def __init__(
        self,
        llm: LLM,
        callback_manager: CallbackManager,
        prompt_helper: PromptHelper,
        text_qa_template: BasePromptTemplate,
        empty_response: str,
        gen_ai: tuple[str, str] = ("local", "local"),
    ) -> None:
        """``gen_ai``: (system, model) of ``llm``, for its span's GenAI attributes."""
        super().__init__(
            llm=llm,
            callback_manager=callback_manager,
            prompt_helper=prompt_helper,
            empty_response=empty_response,
        )
        self._text_qa_template = text_qa_template
        self._gen_ai = gen_ai

    def _get_prompts(self) -> PromptDictType:
        return {"text_qa_template": self._text_qa_template}

    def _update_prompts(self, prompts: PromptDictType) -> None:
        if "text_qa_template" in prompts:
            self._text_qa_template = prompts["text_qa_template"]

    def _context(self, query_str: str, text_chunks: Sequence[str]) -> str:
        context = CHUNK_SEPARATOR.join(text_chunks)
        helper = self._prompt_helper
        room = helper.context_window - max(helper.num_output, 0)
        if 4 * (len(context) + len(query_str)) + 1024 < room:
            return context
        template = self._text_qa_template.partial_format(query_str=query_str)
        return CHUNK_SEPARATOR.join(
            helper.truncate(prompt=template, text_chunks=[context], llm=self._llm)
        )

    def get_response(
        self, query_str: str, text_chunks: Sequence[str], **response_kwargs: Any
    ) -> RESPONSE_TEXT_TYPE:
        return self._llm.predict(
            self._text_qa_template,
            context_str=self._context(query_str, text_chunks),
            query_str=query_str,
        )

    async def aget_response(
        self, query_str: str, text_chunks: Sequence[str], **response_kwargs: Any
    ) -> RESPONSE_TEXT_TYPE:
        with tracing.span("synthesize", attributes={"ragward.chunks": len(text_chunks)}):
            context = self._context(query_str, text_chunks)
            with tracing.llm_call(*self._gen_ai) as span:
                usage = current_usage()
                before = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
                answer = await self._llm.apredict(
                    self._text_qa_template, context_str=context, query_str=query_str,
                )
                if span is not None and usage is not None:
                    span.set_attributes({
                        "gen_ai.usage.input_tokens": usage.prompt_tokens - before[0],
                        "gen_ai.usage.output_tokens": usage.completion_tokens - before[1],
                    })
        return answer
