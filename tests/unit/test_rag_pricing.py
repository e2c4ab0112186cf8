"""Pricing: the cost of a request from the table, and overrides from a file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag_core.pricing import Price, Pricing
from ragward.errors import ConfigError


def test_cost_uses_input_output_and_embedding_prices() -> None:
    """USD = prompt x input + completion x output + embedding x embedding-input, per 1M."""
    pricing = Pricing()
    cost = pricing.cost(
        llm_model="gpt-4o-mini",
        embedding_model="text-embedding-3-small",
        prompt_tokens=1_000_000,
        completion_tokens=500_000,
        embedding_tokens=2_000_000,
    )
    assert cost == pytest.approx(0.15 + 0.30 + 0.04)


def test_local_models_cost_nothing_and_unknown_models_are_flagged() -> None:
    """The local backend is free; a model missing from the table is reported, costs 0."""
    pricing = Pricing()
    assert pricing.known("local-hash-v1-8192") and pricing.known("local-extractive")
    assert not pricing.known("my-llama")
    assert pricing.cost(llm_model="my-llama", embedding_model="x", prompt_tokens=10,
                        completion_tokens=10, embedding_tokens=10) == 0.0


def test_json_file_overrides_and_extends(tmp_path: Path) -> None:
    """A JSON file replaces a built-in price and adds new models."""
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"models": {"gpt-4o-mini": {"input": 1, "output": 2},
                                           "my-llama": {"input": 0.5}}}))
    pricing = Pricing.from_file(path)
    assert pricing.price("gpt-4o-mini") == Price(1.0, 2.0)
    assert pricing.price("my-llama") == Price(0.5, 0.0)
    assert pricing.price("gpt-4o") == Price(2.50, 10.00)


def test_toml_file_at_top_level(tmp_path: Path) -> None:
    """TOML works too, with the models at the top level."""
    path = tmp_path / "prices.toml"
    path.write_text('["my-model"]\ninput = 3.0\noutput = 4.0\n')
    assert Pricing.from_file(path).price("my-model") == Price(3.0, 4.0)


@pytest.mark.parametrize("content", ['{"m": {"output": 1}}', "not json", '["a"]'])
def test_bad_file_names_the_variable(tmp_path: Path, content: str) -> None:
    """A malformed pricing file stops start-up with RAGWARD_PRICING_FILE in the message."""
    path = tmp_path / "prices.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match="RAGWARD_PRICING_FILE"):
        Pricing.from_file(path)
