"""The hold-back automaton: where, in text not sent yet, something may still begin.

The scanner decides about a candidate by reading to the right of its start: the
regexes, and the few scans in Python around them (an e-mail's local part before its
``@``, a secret's prefix before its rare character, an IPv6 address's first group
before its colon, an IBAN's letters before its check digits). What it reads to the
*left* of a candidate (cues such as "SSN" or "订单号", lookbehinds) is text already
seen. Folding is per character (:mod:`gateway.pii.folding`). So the only decisions
that more text can change are those of candidates whose reading reaches the end of
the text so far: a possible entity not yet closed, a match that could still grow, a
right boundary or a lookahead not yet settled.

:class:`Reach` builds, once, the position automaton (Glushkov) of all those patterns:
each character class that a pattern consumes, or looks ahead at, is a position, linked
to the positions that can be read right after it. Lookaheads are read but lead nowhere
past their last character; lookbehinds and anchors read nothing ahead; bounded
repetitions count as unbounded and no lookaround ever rejects. The automaton reads a
superset of what the patterns read, so it may hold back more than needed, never less.
:class:`Readings` follows the unsent text through it, one character at a time: for
every place where a candidate may start, the set of positions its reading stands at.
The earliest start whose reading may still go on is where something begins that is
not final. Readings standing at the same positions go on alike, so only the earliest
of them is kept: a character costs a few memoised steps, however long the text held
back (a run of 20,000 digits streams in linear time).

A *sync point* is a place where no reading that started before it went on through
the next character: no match of any scan spans one, which is what lets a stream
rescan a window instead of the whole text (:mod:`gateway.pii.stream`).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

from gateway.pii.folding import folding
from gateway.pii.patterns import (
    CUE_WINDOW,
    EMAIL_DOMAIN,
    EMAIL_LOCAL_CHARS,
    HEX,
    IBAN_BODY,
    IPV6,
    NUMERIC,
    NUMERIC_NO00,
    SECRET,
    TOKEN_CHARS,
)

__all__ = ["Reach", "Readings", "context", "prepare", "reach"]

# re's own parser (private, stable since 3.11; ``sre_parse`` is its deprecated alias).
_sre: Any = importlib.import_module("re._parser")
_c: Any = importlib.import_module("re._constants")

_ASCII = 128  # class members are code points 0-127, and _ASCII for "any other character"
_DIGITS = frozenset(range(48, 58))
_WORD = frozenset([*range(48, 58), *range(65, 91), *range(97, 123), 95])
_SPACE = frozenset(b" \t\n\r\f\v")
_ALL = frozenset(range(_ASCII + 1))


def _bits(mask: int) -> Iterator[int]:
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


class Reach:
    """The position automaton of every pattern the scanner reads ahead with."""

    def __init__(self, patterns: list[str]) -> None:
        self._classes: list[frozenset[int]] = []
        self._follow: list[int] = []
        self._lookahead: set[int] = set()
        self.max_lookbehind = 0
        first = 0
        for source in patterns:
            f, _, _ = self._seq(_sre.parse(source, re.ASCII).data, False)
            first |= f
        self.first = first
        n = len(self._classes)
        self._masks = [0] * (_ASCII + 1)
        for x, members in enumerate(self._classes):
            for c in members:
                self._masks[c] |= 1 << x
        # Where the reading of a text may go on past its last character: any position,
        # except a lookahead's last (it reads that character and stops).
        want = 0
        for x in range(n):
            if self._follow[x] or x not in self._lookahead:
                want |= 1 << x
        self._want = want
        self._steps: dict[tuple[int, int], int] = {}

    # --- construction -------------------------------------------------------

    def _position(self, members: frozenset[int], lookahead: bool) -> tuple[int, int, bool]:
        x = len(self._classes)
        self._classes.append(members)
        self._follow.append(0)
        if lookahead:
            self._lookahead.add(x)
        return 1 << x, 1 << x, False

    def _link(self, last: int, first: int) -> None:
        for x in _bits(last):
            self._follow[x] |= first

    def _seq(self, items: Any, lookahead: bool) -> tuple[int, int, bool]:
        """(first positions, last positions, nullable) of a concatenation."""
        first = last = 0
        nullable = True
        for op, av in items:
            f, lst, n = self._node(op, av, lookahead)
            self._link(last, f)
            if nullable:
                first |= f
            last = last | lst if n else lst
            nullable = nullable and n
        return first, last, nullable

    def _node(self, op: Any, av: Any, lookahead: bool) -> tuple[int, int, bool]:
        if op is _c.LITERAL:
            return self._position(frozenset([min(av, _ASCII)]), lookahead)
        if op is _c.NOT_LITERAL:
            return self._position(_ALL - {av}, lookahead)
        if op is _c.ANY:
            return self._position(_ALL - {10}, lookahead)
        if op is _c.IN:
            return self._position(_members(av), lookahead)
        if op is _c.SUBPATTERN:
            if av[1] & re.IGNORECASE:
                raise ValueError("case-insensitive groups are not modelled")
            return self._seq(av[3], lookahead)
        if op is _c.ATOMIC_GROUP:
            return self._seq(av, lookahead)
        if op is _c.BRANCH:
            first = last = 0
            nullable = False
            for alternative in av[1]:
                f, lst, n = self._seq(alternative, lookahead)
                first, last, nullable = first | f, last | lst, nullable or n
            return first, last, nullable
        if op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT):
            low, high, body = av
            f, lst, n = self._seq(body, lookahead)
            if high > 1:
                self._link(lst, f)
            return f, lst, n or low == 0
        if op in (_c.ASSERT, _c.ASSERT_NOT):
            direction, body = av
            if direction == 1:  # a lookahead: read after what precedes it, then nothing
                f, _, _ = self._seq(body, True)
                return f, 0, True
            self.max_lookbehind = max(self.max_lookbehind, _lookbehind_reach(body))
            return 0, 0, True
        if op is _c.AT:
            if av in (_c.AT_BEGINNING, _c.AT_BEGINNING_STRING):
                return 0, 0, True  # reads nothing ahead
            # \b, \B, $, \Z look at the next character: a one-character lookahead
            f, _, _ = self._position(_ALL, True)
            return f, 0, True
        raise ValueError(f"regex construct {op} is not modelled")

    # --- reading ------------------------------------------------------------

    def starts(self, c: str) -> int:
        """The first positions that can read ``c`` (a normalised character)."""
        x = ord(c)
        return self._masks[x if x < _ASCII else _ASCII] & self.first

    def step(self, positions: int, c: str) -> int:
        """The positions reading ``c`` right after one of ``positions`` (memoised)."""
        x = ord(c)
        key = (positions, x if x < _ASCII else _ASCII)
        nxt = self._steps.get(key)
        if nxt is None:
            if len(self._steps) > 100_000:
                self._steps.clear()
            after = 0
            for y in _bits(positions):
                after |= self._follow[y]
            nxt = self._steps[key] = self._masks[key[1]] & after
        return nxt

    def goes_on(self, positions: int) -> bool:
        """Whether a reading that stands at ``positions`` may read one more character."""
        return bool(positions & self._want)


class Readings:
    """The readings of the unsent text that are still alive, by where they start.

    One entry per distinct set of automaton positions, for the earliest start that
    stands there: two readings at the same positions go on alike, and the earlier one
    is the one that matters. So the list stays short, and each character costs a few
    memoised steps, however long the text held back.
    """

    __slots__ = ("_alive", "reach", "syncs")

    def __init__(self, reach: Reach) -> None:
        self.reach = reach
        self._alive: list[tuple[int, int]] = []  # (start index in the raw text, positions)
        # Sync points, in order: indexes i such that no reading started before i went on
        # through the character at i. No match of any scan spans one.
        self.syncs: list[int] = []

    def read(self, index: int, c: str) -> None:
        """Read the raw character ``c`` at ``index`` (as the scanner sees it, folded)."""
        reach = self.reach
        for ch in _fold_char(c):
            alive: list[tuple[int, int]] = []
            seen: set[int] = set()
            for start, positions in self._alive:
                nxt = reach.step(positions, ch)
                if nxt and nxt not in seen:
                    seen.add(nxt)
                    alive.append((start, nxt))
            first = reach.starts(ch)
            if first and first not in seen:
                alive.append((index, first))
            self._alive = alive
        if not self._alive or self._alive[0][0] >= index:
            self.syncs.append(index)

    def open_start(self, end: int) -> int:
        """The earliest start of a reading that may still go on; ``end`` if none."""
        for start, positions in self._alive:
            if self.reach.goes_on(positions):
                return start
        return end

    def shift(self, base: int) -> None:
        """The raw text lost its first ``base`` characters."""
        self._alive = [(start - base, positions) for start, positions in self._alive]
        self.syncs = [i - base for i in self.syncs]


def _lookbehind_reach(body: Any) -> int:
    """How far before the current position a lookbehind reads: its width, plus what
    any lookbehind nested in it reads before that (an over-estimate, which is safe)."""
    return int(body.getwidth()[1]) + max(
        map(_lookbehind_reach, _nested_lookbehinds(body)), default=0
    )


def _nested_lookbehinds(items: Any) -> Iterator[Any]:
    for op, av in items:
        if op in (_c.ASSERT, _c.ASSERT_NOT):
            if av[0] == -1:
                yield av[1]
            else:
                yield from _nested_lookbehinds(av[1])
        elif op is _c.SUBPATTERN:
            yield from _nested_lookbehinds(av[3])
        elif op is _c.BRANCH:
            for alternative in av[1]:
                yield from _nested_lookbehinds(alternative)
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT):
            yield from _nested_lookbehinds(av[2])
        elif op is _c.ATOMIC_GROUP:
            yield from _nested_lookbehinds(av)


def _members(items: Any) -> frozenset[int]:
    """The code points of a character class (``re.ASCII`` meaning), non-ASCII as _ASCII."""
    out: set[int] = set()
    negate = False
    for op, av in items:
        if op is _c.NEGATE:
            negate = True
        elif op is _c.LITERAL:
            out.add(min(av, _ASCII))
        elif op is _c.RANGE:
            lo, hi = av
            out.update(range(min(lo, _ASCII), min(hi, _ASCII) + 1))
        elif op is _c.CATEGORY:
            out |= _category(av)
        else:
            raise ValueError(f"class item {op} is not modelled")
    return _ALL - out if negate else frozenset(out)


def _category(cat: Any) -> frozenset[int]:
    table = {
        _c.CATEGORY_DIGIT: _DIGITS,
        _c.CATEGORY_WORD: _WORD,
        _c.CATEGORY_SPACE: _SPACE,
        _c.CATEGORY_LINEBREAK: frozenset([10]),
    }
    negated = {
        _c.CATEGORY_NOT_DIGIT: _DIGITS,
        _c.CATEGORY_NOT_WORD: _WORD,
        _c.CATEGORY_NOT_SPACE: _SPACE,
        _c.CATEGORY_NOT_LINEBREAK: frozenset([10]),
    }
    if cat in table:
        return table[cat]
    return _ALL - negated[cat]


def _class(chars: frozenset[str]) -> str:
    return "[" + "".join(re.escape(c) for c in sorted(chars)) + "]"


@cache
def reach() -> Reach:
    """Every pattern the scanner reads ahead with, each with the scan in Python that
    extends its hit to the left (so the hit's first character is a first position)."""
    patterns = [
        NUMERIC.pattern,
        NUMERIC_NO00.pattern,
        *(p.pattern for p in IBAN_BODY.values()),
        # the local part is the run of local-part characters before the "@"
        _class(EMAIL_LOCAL_CHARS) + "*@" + EMAIL_DOMAIN.pattern,
        # a secret's hit starts at the token before its rare character
        _class(TOKEN_CHARS) + "*" + SECRET.pattern,
        # an IPv6 address's first group is before the colon the regex starts at
        _class(HEX) + "*" + IPV6.pattern,
    ]
    return Reach(patterns)


def _fold_char(c: str) -> str:
    """``c`` as the scanner reads it (its ASCII compatibility form, or itself)."""
    if c.isascii():
        return c
    return folding().table.get(ord(c), c)


def prepare() -> None:
    """Build the automaton now (about 50 ms, once per process), not on the first stream."""
    reach()
    context()


@cache
def context() -> int:
    """Characters kept before a sync point: every cue window and lookbehind, with room."""
    return max(CUE_WINDOW, reach().max_lookbehind) + 8
