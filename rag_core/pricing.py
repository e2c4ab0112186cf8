"""Model prices (USD per 1M tokens) and the cost of a request.

Built-in list prices can be overridden or extended by ``RAGWARD_PRICING_FILE``,
a JSON or TOML file mapping model name to ``{input, output}`` prices, either at
the top level or under ``models``::

    [models."gpt-4o-mini"]
    input = 0.15
    output = 0.60

Embedding models have only an ``input`` price. Unknown models cost 0 and are
reported by :meth:`Pricing.known` so the service can warn once at start-up.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragward.errors import ConfigError


@dataclass(frozen=True)
class Price:
    input: float
    output: float = 0.0


DEFAULT_PRICES: dict[str, Price] = {
    "local-extractive": Price(0.0, 0.0),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-3.5-turbo": Price(0.50, 1.50),
    "o4-mini": Price(1.10, 4.40),
    "text-embedding-3-small": Price(0.02),
    "text-embedding-3-large": Price(0.13),
    "text-embedding-ada-002": Price(0.10),
}
LOCAL_PREFIX = "local-"


class Pricing:
    def __init__(self, prices: dict[str, Price] | None = None) -> None:
        self.prices = dict(DEFAULT_PRICES if prices is None else prices)

    @classmethod
    def from_file(cls, path: Path | None) -> Pricing:
        """Defaults, with the entries of a JSON or TOML file laid over them."""
        pricing = cls()
        if path is None:
            return pricing
        try:
            raw = path.read_bytes()
            data: Any = (
                tomllib.loads(raw.decode("utf-8"))
                if path.suffix.lower() == ".toml"
                else json.loads(raw)
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(f"RAGWARD_PRICING_FILE: cannot read {path}: {exc}") from None
        models = data.get("models", data) if isinstance(data, dict) else None
        if not isinstance(models, dict):
            raise ConfigError("RAGWARD_PRICING_FILE: expected a table of models")
        for name, entry in models.items():
            try:
                pricing.prices[str(name)] = Price(
                    float(entry["input"]), float(entry.get("output", 0.0))
                )
            except (TypeError, KeyError, ValueError):
                raise ConfigError(
                    f"RAGWARD_PRICING_FILE: model {name!r} needs numeric 'input' (and 'output')"
                ) from None
        return pricing

    def known(self, model: str) -> bool:
        return model in self.prices or model.startswith(LOCAL_PREFIX)

    def price(self, model: str) -> Price:
        return self.prices.get(model, Price(0.0, 0.0))

    def cost(
        self,
        *,
        llm_model: str,
        embedding_model: str,
        prompt_tokens: int,
        completion_tokens: int,
        embedding_tokens: int,
    ) -> float:
        llm = self.price(llm_model)
        emb = self.price(embedding_model)
        usd = (
            prompt_tokens * llm.input
            + completion_tokens * llm.output
            + embedding_tokens * emb.input
        ) / 1_000_000
        return round(usd, 10)
