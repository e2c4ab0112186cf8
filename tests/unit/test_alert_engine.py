"""The alert engine's state machine, driven by a scripted MetricsView and a manual clock."""

from __future__ import annotations

from alerting.clock import ManualClock
from alerting.engine import Engine, Transition, fingerprint
from alerting.view import Sample
from tests.alert_helpers import ERROR_RATE_RULES, ScriptedView, error_rate, rules_from_yaml

RULES = ERROR_RATE_RULES


def _states(transitions: list[Transition]) -> list[tuple[str, str, str]]:
    return [(t.alert.labels.get("tenant", ""), t.previous, t.state) for t in transitions]


def _engine(rules: str = RULES) -> tuple[Engine, ScriptedView, ManualClock]:
    view = ScriptedView()
    return Engine(rules_from_yaml(rules), view), view, ManualClock()


def test_pending_then_firing_after_for_then_resolved() -> None:
    """inactive → pending → (after `for`) firing → resolved, with startsAt/endsAt timestamps."""
    engine, view, clock = _engine()
    view.set("error_rate", error_rate("acme", 0.5))
    assert _states(engine.evaluate(clock.now())) == [("acme", "inactive", "pending")]
    start = clock.now()
    clock.advance(20)
    assert engine.evaluate(clock.now()) == []
    clock.advance(10)
    transitions = engine.evaluate(clock.now())
    assert _states(transitions) == [("acme", "pending", "firing")]
    alert = transitions[0].alert
    assert alert.active_at == start and alert.fired_at == clock.now()
    assert alert.labels == {"tenant": "acme", "severity": "page", "alertname": "HighErrorRate"}
    assert alert.annotations == {"summary": "error rate 0.5 for acme"}
    view.set("error_rate", error_rate("acme", 0.01))
    clock.advance(5)
    transitions = engine.evaluate(clock.now())
    assert _states(transitions) == [("acme", "firing", "resolved")]
    assert transitions[0].alert.resolved_at == clock.now()


def test_pending_returns_to_inactive_when_condition_clears_before_for() -> None:
    """A blip shorter than `for` never fires."""
    engine, view, clock = _engine()
    view.set("error_rate", error_rate("acme", 0.5))
    engine.evaluate(clock.now())
    clock.advance(15)
    view.set("error_rate", error_rate("acme", 0.0))
    assert _states(engine.evaluate(clock.now())) == [("acme", "pending", "inactive")]
    assert engine.alerts() == []
    # Coming back restarts the `for` timer.
    view.set("error_rate", error_rate("acme", 0.5))
    clock.advance(5)
    engine.evaluate(clock.now())
    clock.advance(25)
    assert engine.evaluate(clock.now()) == []


def test_for_zero_fires_at_once_and_label_sets_are_independent() -> None:
    """`for: 0s` goes straight to firing; each tenant is its own alert."""
    engine, view, clock = _engine(RULES.replace("for: 30s", "for: 0s"))
    view.set("error_rate", error_rate("acme", 0.5), error_rate("globex", 0.01))
    assert _states(engine.evaluate(clock.now())) == [("acme", "inactive", "firing")]
    view.set("error_rate", error_rate("acme", 0.5), error_rate("globex", 0.9))
    clock.advance(5)
    assert _states(engine.evaluate(clock.now())) == [("globex", "inactive", "firing")]
    assert len({a.fingerprint for a in engine.alerts()}) == 2


def test_min_requests_thin_window_decides_nothing() -> None:
    """Below min_requests an alert neither starts nor resolves; the label set vanishing resolves."""
    engine, view, clock = _engine(RULES.replace("for: 30s", "for: 0s"))
    view.set("error_rate", error_rate("acme", 1.0, requests=3))
    assert engine.evaluate(clock.now()) == []
    view.set("error_rate", error_rate("acme", 1.0, requests=20))
    assert _states(engine.evaluate(clock.advance(5))) == [("acme", "inactive", "firing")]
    view.set("error_rate", error_rate("acme", 0.0, requests=2))
    assert engine.evaluate(clock.advance(5)) == []
    assert engine.alerts()[0].state == "firing"
    view.set("error_rate")  # no sample at all for acme: the series is gone
    assert _states(engine.evaluate(clock.advance(5))) == [("acme", "firing", "resolved")]


def test_no_value_counts_as_condition_false() -> None:
    """A sample without a value (no data) does not keep an alert firing."""
    engine, view, clock = _engine(RULES.replace("for: 30s", "for: 0s"))
    view.set("error_rate", error_rate("acme", 0.5))
    engine.evaluate(clock.now())
    view.set("error_rate", Sample({"tenant": "acme"}, None, 50))
    assert _states(engine.evaluate(clock.advance(5))) == [("acme", "firing", "resolved")]


def test_keep_firing_for_holds_the_alert_after_recovery() -> None:
    """keep_firing_for counts from the first false evaluation; a relapse cancels it."""
    rules = RULES.replace("for: 30s", "for: 0s\n    keep_firing_for: 1m")
    engine, view, clock = _engine(rules)
    view.set("error_rate", error_rate("acme", 0.5))
    engine.evaluate(clock.now())
    view.set("error_rate", error_rate("acme", 0.0))
    assert engine.evaluate(clock.advance(5)) == []
    assert engine.evaluate(clock.advance(30)) == []
    view.set("error_rate", error_rate("acme", 0.5))  # relapse resets keep_firing_since
    assert engine.evaluate(clock.advance(5)) == []
    view.set("error_rate", error_rate("acme", 0.0))
    assert engine.evaluate(clock.advance(5)) == []
    assert engine.evaluate(clock.advance(55)) == []
    assert _states(engine.evaluate(clock.advance(5))) == [("acme", "firing", "resolved")]


def test_annotations_follow_the_value_and_resolved_alerts_expire() -> None:
    """Annotations are re-rendered each evaluation; resolved alerts are kept for a retention."""
    engine, view, clock = _engine(RULES.replace("for: 30s", "for: 0s"))
    engine.resolved_retention_s = 60
    view.set("error_rate", error_rate("acme", 0.5))
    engine.evaluate(clock.now())
    view.set("error_rate", error_rate("acme", 0.25))
    engine.evaluate(clock.advance(5))
    assert engine.alerts()[0].annotations["summary"] == "error rate 0.25 for acme"
    view.set("error_rate", error_rate("acme", 0.0))
    engine.evaluate(clock.advance(5))
    assert [a.state for a in engine.notifiable()] == ["resolved"]
    engine.take_changes()
    engine.evaluate(clock.advance(59))
    assert engine.alerts()
    engine.evaluate(clock.advance(1))
    assert engine.alerts() == []
    acme = fingerprint({"tenant": "acme", "severity": "page", "alertname": "HighErrorRate"})
    assert engine.take_changes() == ([], [acme])


def test_failing_query_changes_nothing() -> None:
    """A MetricsView that raises is no decision for that rule: firing alerts stay firing."""
    engine, view, clock = _engine(RULES.replace("for: 30s", "for: 0s"))
    view.set("error_rate", error_rate("acme", 0.5))
    engine.evaluate(clock.now())

    def broken(*args: object, **kwargs: object) -> list[Sample]:
        raise RuntimeError("store unavailable")

    view.query = broken  # type: ignore[method-assign]
    assert engine.evaluate(clock.advance(5)) == []
    assert engine.alerts()[0].state == "firing"


def test_queries_pass_window_group_by_and_now() -> None:
    """The engine asks the view for the rule's metric, window and group_by at the clock's now."""
    engine, view, clock = _engine()
    engine.evaluate(clock.now())
    assert view.queries == [("error_rate", "1m", ("tenant",), clock.now())]


def test_restore_resumes_timers_and_resolves_alerts_of_removed_rules() -> None:
    """A restarted engine keeps a pending alert's `for` timer; alerts of deleted rules resolve."""
    engine, view, clock = _engine()
    view.set("error_rate", error_rate("acme", 0.5))
    engine.evaluate(clock.now())
    saved = engine.alerts()
    clock.advance(20)
    engine2, view2, _ = _engine()
    engine2.restore(saved, clock.now())
    view2.set("error_rate", error_rate("acme", 0.5))
    assert _states(engine2.evaluate(clock.advance(10))) == [("acme", "pending", "firing")]
    other, _, _ = _engine(RULES.replace("HighErrorRate", "Renamed"))
    transitions = other.restore(engine2.alerts(), clock.now())
    assert _states(transitions) == [("acme", "firing", "resolved")]


BURN = """
rules:
  - name: FastBurn
    slo: 0.999
    windows:
      - {long: 1h, short: 5m, factor: 14.4}
    min_requests: 100
    for: 1m
"""


def test_burn_rate_fires_only_when_both_windows_burn_and_resolves() -> None:
    """Fast burn: error budget burning > 14.4x over 1h AND 5m fires after `for`; the short
    window recovering resolves it even while the 1h window is still high."""
    engine, view, clock = _engine(BURN)
    view.set("error_rate", Sample({}, 0.02, 5000), windows=["1h"])   # 20x over 1h
    view.set("error_rate", Sample({}, 0.001, 400), windows=["5m"])   # 1x over 5m
    assert engine.evaluate(clock.now()) == []
    view.set("error_rate", Sample({}, 0.03, 400), windows=["5m"])    # 30x over 5m
    assert _states(engine.evaluate(clock.advance(10))) == [("", "inactive", "pending")]
    transitions = engine.evaluate(clock.advance(60))
    assert _states(transitions) == [("", "pending", "firing")]
    assert round(transitions[0].alert.value or 0, 6) == 20.0  # the long window's burn rate
    view.set("error_rate", Sample({}, 0.0, 400), windows=["5m"])
    assert _states(engine.evaluate(clock.advance(10))) == [("", "firing", "resolved")]


def test_burn_rate_needs_min_requests_on_the_long_window() -> None:
    """A burn over too few requests is no decision."""
    engine, view, clock = _engine(BURN.replace("for: 1m", "for: 0s"))
    view.set("error_rate", Sample({}, 0.5, 50))
    assert engine.evaluate(clock.now()) == []
    view.set("error_rate", Sample({}, 0.5, 150))
    assert _states(engine.evaluate(clock.advance(5))) == [("", "inactive", "firing")]


def test_default_slow_burn_is_looser_than_fast_burn() -> None:
    """With the shipped rules, 8x burns page nothing fast but fire the slow-burn rule."""
    from alerting.rules import load_rules

    view = ScriptedView()
    engine = Engine(load_rules(None), view)
    clock = ManualClock()
    view.set("error_rate", Sample({}, 0.008, 10_000))  # 8x the 0.1 % budget, every window
    engine.evaluate(clock.now())
    firing = {t.alert.rule for t in engine.evaluate(clock.advance(16 * 60)) if t.state == "firing"}
    assert firing == {"AvailabilityBudgetSlowBurn"}


DEADMAN = """
rules:
  - name: EventsSilent
    metric: events_silence
    op: ">"
    threshold: 600
"""


def test_dead_mans_switch_fires_on_silence_and_resolves_when_events_return() -> None:
    """No event for more than 10 minutes fires at once; the next event resolves it."""
    engine, view, clock = _engine(DEADMAN)
    silence_started = clock.now()

    def silence(now: float) -> None:
        view.set("events_silence", Sample({}, now - silence_started, 0))

    silence(clock.now())
    assert engine.evaluate(clock.now()) == []
    clock.advance(600)
    silence(clock.now())
    assert engine.evaluate(clock.now()) == []
    clock.advance(5)
    silence(clock.now())
    transitions = engine.evaluate(clock.now())
    assert _states(transitions) == [("", "inactive", "firing")]
    assert transitions[0].alert.value == 605
    view.set("events_silence", Sample({}, 1.0, 0))
    assert _states(engine.evaluate(clock.advance(5))) == [("", "firing", "resolved")]


def test_warm_up_missing_data_does_not_resolve_a_restored_alert() -> None:
    """After a restart the view is empty: until the rule's window has filled, a missing label
    set is no decision (a firing alert stays firing); data that shows recovery still resolves."""
    engine, view, clock = _engine(RULES.replace("for: 30s", "for: 0s"))
    view.set("error_rate", error_rate("acme", 0.5))
    engine.evaluate(clock.now())
    restarted, _, _ = _engine(RULES.replace("for: 30s", "for: 0s"))
    restarted.restore(engine.alerts(), clock.now())
    restarted.warmup_from = clock.now()
    assert restarted.evaluate(clock.advance(30)) == []
    assert restarted.alerts()[0].state == "firing"
    assert _states(restarted.evaluate(clock.advance(30))) == [("acme", "firing", "resolved")]
    third, view3, _ = _engine(RULES.replace("for: 30s", "for: 0s"))
    third.restore(engine.alerts(), clock.now())
    third.warmup_from = clock.now()
    view3.set("error_rate", error_rate("acme", 0.0))
    assert _states(third.evaluate(clock.advance(5))) == [("acme", "firing", "resolved")]
