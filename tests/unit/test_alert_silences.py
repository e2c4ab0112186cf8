"""Silence matchers (Alertmanager syntax), time windows, and their persistence."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerting.silences import Matcher, Silence, muted_by
from alerting.state_store import StateStore

T0 = 1_700_000_000.0
LABELS = {"alertname": "HighErrorRate", "tenant": "acme", "severity": "page"}


@pytest.mark.parametrize(("text", "matches"), [
    ("tenant=acme", True),
    ('tenant="acme"', True),
    ("tenant!=acme", False),
    ("tenant=~ac.*", True),
    ("tenant=~cme", False),          # anchored: must match the whole value
    ("tenant!~glob.*", True),
    ("alertname=~High.*|Low.*", True),
    ("region=", True),               # a missing label reads as ""
    ("region!=", False),
])
def test_matchers(text: str, matches: bool) -> None:
    """=, !=, =~, !~ with fully anchored regexes, like Alertmanager."""
    assert Matcher.parse(text).matches(LABELS) is matches


@pytest.mark.parametrize("text", ["tenant", "=acme", "ten ant=acme", "tenant=~(unclosed"])
def test_bad_matchers_are_refused(text: str) -> None:
    """Malformed matchers and bad regexes raise ValueError with the matcher."""
    with pytest.raises(ValueError):
        Matcher.parse(text)


def test_silence_window_and_all_matchers() -> None:
    """A silence mutes only while active and only when every matcher matches."""
    silence = Silence.create([Matcher.parse("tenant=acme"), Matcher.parse("severity=page")],
                             T0, T0 + 60, now=T0)
    assert silence.mutes(LABELS, T0) and silence.mutes(LABELS, T0 + 59.9)
    assert not silence.mutes(LABELS, T0 - 1) and not silence.mutes(LABELS, T0 + 60)
    assert not silence.mutes({**LABELS, "severity": "ticket"}, T0)
    assert muted_by([silence], LABELS, T0) == [silence.id]


def test_silence_refuses_match_everything_and_empty_windows() -> None:
    """A silence must name something and end after it starts."""
    with pytest.raises(ValueError, match="match every alert"):
        Silence.create([Matcher.parse("tenant=~.*")], T0, T0 + 60, now=T0)
    with pytest.raises(ValueError, match="end after"):
        Silence.create([Matcher.parse("tenant=acme")], T0, T0, now=T0)


def test_silences_round_trip_through_the_store(tmp_path: Path) -> None:
    """Silences written by the CLI are read back (matchers included) by the service."""
    silence = Silence.create([Matcher.parse("tenant=~ac.*")], T0, T0 + 60, created_by="ops",
                             comment="maintenance", now=T0)
    with StateStore(tmp_path / "alerts.db") as store:
        store.add_silence(silence)
    with StateStore(tmp_path / "alerts.db") as store:
        [loaded] = store.silences(T0)
        assert loaded.mutes(LABELS, T0) and loaded.comment == "maintenance"
        assert store.silences(T0 + 60) == []
        assert store.expire_silence(silence.id, T0 + 10)
        assert store.silences(T0 + 10) == []
