"""The OpenAI-compatible surface (CONTRACT §4b): wire shapes in ``wire``, routes in ``routes``."""
