"""Bilingual (Chinese and English) text handling: sentences, terms and the chunk splitter.

One place decides what a sentence and a term are, so the splitter, the local
embedding and the extractive answerer agree:

* sentences end at the CJK full stop, exclamation and question marks and semicolon
  (and their half-width forms), at ``.!?`` followed by
  white space, and at line breaks;
* English terms are lower-cased words with light suffix stripping, Chinese terms
  are CJK character unigrams and bigrams (no dictionary segmentation needed).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

from llama_index.core.node_parser import SentenceSplitter

# Ideographs (CJK unified, extension A, compatibility) and Japanese kana ride along.
CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_HAS_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
_LETTERS = re.compile(r"[^\W\d_]+")  # a word of any script, digits aside
_HAS_WORD = re.compile(r"[A-Za-z\u3400-\u4dbf\u4e00-\u9fff]")
# A sentence ends after CJK terminators, or after .!? that is followed by a space.
_SENTENCE_END = re.compile(r"(?<=[。！？；!?])\s*|(?<=[.!?])\s+")  # noqa: RUF001 (CJK marks)
_MARKUP_PREFIX = re.compile(r"^\s*(?:#{1,6}\s+|[-*+]\s+|\d{1,2}[.)](?:\s+|$)|>\s*)")
# Where the splitter may cut: after CJK terminators, after .!? plus white space
# (but not after a list number such as "1. "), and at line breaks.
_PIECE_END = re.compile(
    r"(?<=[。！？；!?])|(?<=[.!?])(?<!^\d\.)(?<!^\d\d\.)\s+|\n+",  # noqa: RUF001 (CJK marks)
    re.M,
)
SECONDARY_CHUNKING_REGEX = "[^,.;，；。？！!?]+[,.;，；。？！!?]?|[,.;，；。？！!?]"  # noqa: RUF001

ENGLISH_STOPWORDS = frozenset(
    """
    a about above after again all am an and any are as at be been before being below between
    both but by can could did do does doing down during each few for from further had has have
    having he her here hers him his how i if in into is it its itself just me more most my no
    nor not now of off on once only or other our ours out over own same she should so some such
    than that the their theirs them then there these they this those through to too under until
    up very was we were what when where which while who whom why will with would you your yours
    yourself get got may might must shall also per via us let lets
    """.split()  # noqa: SIM905 (a word list reads better as text)
)
# Single characters too common in Chinese questions and prose to say anything about a topic.
CHINESE_STOP_CHARS = frozenset(
    "的了是在和与及或吗呢吧啊么什怎如何哪些我你他她们这那个有要会能可以请就都也还把被对为于之其该样"
)
# Particles: a bigram that contains one straddles a word boundary ("司的", "策是").
CHINESE_PARTICLES = frozenset("的了是吗呢吧啊么")
# Bigrams that are question phrasing, not topic.
CHINESE_STOP_BIGRAMS = frozenset(
    "什么 怎么 怎样 如何 哪些 哪个 多少 是否 可以 需要 应该 我们 你们 他们 有几 几天".split()  # noqa: SIM905
)


def normalize(text: str) -> str:
    """NFKC (full-width digits and Latin to half-width) and lower case."""
    return unicodedata.normalize("NFKC", text).lower()


def has_cjk(text: str) -> bool:
    return _HAS_CJK.search(text) is not None


def is_chinese(text: str) -> bool:
    """True when Chinese characters outnumber the words of other scripts (a character
    carries about a word: "连接公司 VPN GlobalProtect" is Chinese)."""
    cjk = sum(len(run) for run in CJK_RUN.findall(text))
    return cjk > len(_LETTERS.findall(CJK_RUN.sub(" ", text)))


def stem(word: str) -> str:
    """A light English suffix stripper: enough to join plural, -ing and -ed forms."""
    if len(word) <= 3 or not word.isalpha():
        return word
    for suffix, replacement, min_len in (
        ("ies", "y", 5),
        ("sses", "ss", 5),
        ("ments", "", 8),
        ("ment", "", 7),
        ("ings", "", 6),
        ("ing", "", 6),
        ("ied", "y", 5),
        ("ed", "", 5),
        ("es", "", 5),
        ("s", "", 4),
    ):
        if word.endswith(suffix) and len(word) >= min_len:
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                return word
            if suffix == "es" and not word.endswith(("ches", "shes", "xes", "zes", "sses")):
                return word[:-1]
            return word[: len(word) - len(suffix)] + replacement
    return word


def english_terms(text: str) -> list[str]:
    """Content words, lower-cased, stop words removed, stemmed."""
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in ENGLISH_STOPWORDS]


def iter_segments(text: str) -> Iterator[tuple[bool, str]]:
    """Split normalised text into (is_cjk, segment) runs."""
    pos = 0
    for match in CJK_RUN.finditer(text):
        if match.start() > pos:
            yield False, text[pos : match.start()]
        yield True, match.group()
        pos = match.end()
    if pos < len(text):
        yield False, text[pos:]


def split_sentences(text: str) -> list[str]:
    """Sentences of Chinese and English text; line breaks always end a sentence.

    Markdown headings stay whole (with their ``#``); list markers are dropped
    first so that "1. Log in" is not split after "1.".
    """
    out: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if is_heading(line):
            out.append(line)
            continue
        line = strip_markup(line)
        out.extend(
            piece.strip() for piece in _SENTENCE_END.split(line) if _HAS_WORD.search(piece)
        )
    return out


def sentence_pieces(text: str) -> list[str]:
    """The splitter's sentence tokenizer: like split_sentences, but keeps the separators.

    SentenceSplitter joins the pieces back together, so they must cover the text.
    """
    pieces: list[str] = []
    start = 0
    for match in _PIECE_END.finditer(text):
        end = match.end()
        if end > start:
            pieces.append(text[start:end])
            start = end
    if start < len(text):
        pieces.append(text[start:])
    return [p for p in pieces if p]


def strip_markup(sentence: str) -> str:
    """Drop a Markdown heading, bullet or list-number prefix."""
    return _MARKUP_PREFIX.sub("", sentence).strip()


def is_heading(line: str) -> bool:
    return line.lstrip().startswith("#")


def heading_level(line: str) -> int:
    """1 for "# Title", 2 for "## Section", ...; 0 for a non-heading."""
    stripped = line.lstrip()
    return len(stripped) - len(stripped.lstrip("#")) if stripped.startswith("#") else 0


def make_splitter(chunk_size: int = 192, chunk_overlap: int = 32) -> SentenceSplitter:
    """A SentenceSplitter that knows Chinese sentence ends as well as English ones."""
    return SentenceSplitter(
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        paragraph_separator="\n\n",
        chunking_tokenizer_fn=sentence_pieces,
        secondary_chunking_regex=SECONDARY_CHUNKING_REGEX,
        include_metadata=True,
        include_prev_next_rel=True,
    )
