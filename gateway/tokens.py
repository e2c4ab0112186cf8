"""Token estimates for quota reservations, with tiktoken's encoding shipped by LlamaIndex.

The encoding file comes from llama_index.core's bundled tiktoken cache, so this
works offline and without importing LlamaIndex itself (slow) into the gateway.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path

ENCODING = "cl100k_base"


def _bundled_cache_dir() -> str | None:
    spec = importlib.util.find_spec("llama_index.core")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "_static" / "tiktoken_cache"
    return str(path) if path.is_dir() else None


@cache
def _encoder() -> Callable[[str], list[int]]:
    import tiktoken

    bundled = _bundled_cache_dir()
    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
    if bundled and previous is None:
        os.environ["TIKTOKEN_CACHE_DIR"] = bundled
    try:
        encoding = tiktoken.get_encoding(ENCODING)
    finally:
        if bundled and previous is None:
            del os.environ["TIKTOKEN_CACHE_DIR"]
    return encoding.encode_ordinary


def count_tokens(text: str) -> int:
    return len(_encoder()(text))
