"""The PII entity types the redactor detects and the actions a deployment may choose.

They live at the bottom, beside the settings, because both the settings (which
validate ``RAGWARD_PII_ACTIONS``) and the redactor (:mod:`gateway.pii`, which
re-exports them) name them; neither should import the other for a list of names.
"""

from __future__ import annotations

from enum import StrEnum


class EntityType(StrEnum):
    EMAIL = "EMAIL"
    PHONE = "PHONE"
    CREDIT_CARD = "CREDIT_CARD"
    IBAN = "IBAN"
    US_SSN = "US_SSN"
    CN_ID = "CN_ID"
    IPV4 = "IPV4"
    IPV6 = "IPV6"
    SECRET = "SECRET"  # noqa: S105 (an entity type's name, not a password)


class Action(StrEnum):
    REDACT = "redact"
    KEEP = "keep"
    BLOCK = "block"
