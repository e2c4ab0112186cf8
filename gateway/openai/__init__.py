"""The OpenAI-compatible surface (docs/openai.md): wire shapes in ``wire``, routes in ``routes``."""
