from collections.abc import Mapping, Sequence

class Scanner:
    """The PII scanner of ``gateway/pii/``, compiled (see native/src/lib.rs)."""

    def __init__(
        self,
        patterns: Mapping[str, str],
        kinds: Mapping[str, object],
        fold: Mapping[str, str],
        tables: Mapping[str, Mapping[str, int] | Mapping[str, tuple[int, int]] | Sequence[str] | int],
    ) -> None:
        """``tables``: ``iban_lengths``, ``national_lengths``, ``two_digit_country_codes``,
        ``cn_provinces``, ``cue_window`` (``gateway.pii.native.tables()``)."""
    def scan(self, text: str) -> list[tuple[int, int, object, str]]:
        """Entities in ``text`` as it is (already folded): (start, end, kind, canonical
        value), sorted and non-overlapping, offsets in characters."""
    def detect(self, text: str) -> list[tuple[int, int, object, str]]:
        """The same for ``text`` folded first, with offsets into ``text`` itself."""
