from collections.abc import Mapping

class Scanner:
    """The PII scanner of ``gateway/redaction.py``, compiled (see native/src/lib.rs)."""

    def __init__(
        self, patterns: Mapping[str, str], kinds: Mapping[str, object], fold: Mapping[str, str]
    ) -> None: ...
    def scan(self, text: str) -> list[tuple[int, int, object, str]]:
        """Entities in ``text`` as it is (already folded): (start, end, kind, canonical
        value), sorted and non-overlapping, offsets in characters."""
    def detect(self, text: str) -> list[tuple[int, int, object, str]]:
        """The same for ``text`` folded first, with offsets into ``text`` itself."""
