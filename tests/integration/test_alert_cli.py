"""`ragward alerts silence|silences|state` and `ragward consumer alerts` start-up checks."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest
from pydantic import SecretStr

from alerting import silences_cli
from alerting.configuration import alert_config
from alerting.consumer import main as consumer_main
from alerting.engine import Alert
from alerting.state_store import StateStore, db_path
from ragward.cli import main as ragward_main
from ragward.errors import ConfigError
from ragward.settings import Settings
from telemetry.configuration import metrics_consumer_config


def _args(**values: object) -> argparse.Namespace:
    return argparse.Namespace(**values)


def test_silence_add_list_and_state(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    """A silence added by the CLI is stored with its matchers and listed; state lists alerts."""
    assert silences_cli.add(settings, _args(matchers=["tenant=acme", "alertname=~High.*"],
                                            duration="2h", comment="INC-1", author="alice")) == 0
    assert "added: tenant=acme alertname=~High.*" in capsys.readouterr().out
    with StateStore(db_path(settings.data_dir)) as store:
        [silence] = store.silences()
        assert silence.mutes({"tenant": "acme", "alertname": "HighErrorRate"}, silence.starts_at)
        assert silence.ends_at - silence.starts_at == 7200
        store.save_alerts([Alert(rule="HighErrorRate", fingerprint="f1",
                                 labels={"alertname": "HighErrorRate", "tenant": "acme"},
                                 annotations={}, state="firing", active_at=1.7e9,
                                 fired_at=1.7e9 + 30, value=0.25)])
    assert silences_cli.list_(settings, _args()) == 0
    listing = capsys.readouterr().out
    assert silence.id in listing and "INC-1" in listing and "alice" in listing
    assert silences_cli.state(settings, _args()) == 0
    state = capsys.readouterr().out.splitlines()
    assert state[1].split() == ["HighErrorRate", "firing", "2023-11-14T22:13:50Z", "0.25",
                                "tenant=acme"]


@pytest.mark.parametrize(("matchers", "duration", "message"), [
    (["tenant"], "1h", "is not a matcher"),
    (["tenant=~("], "1h", "bad regex"),
    (["tenant=~.*"], "1h", "match every alert"),
    (["tenant=acme"], "soon", "is not a duration"),
    (["tenant=acme"], "0s", "longer than 0s"),
])
def test_silence_add_refuses_bad_input(settings: Settings, capsys: pytest.CaptureFixture[str],
                                       matchers: list[str], duration: str, message: str) -> None:
    """Bad matchers or durations exit 2 with a one-line reason and store nothing."""
    assert silences_cli.add(settings, _args(matchers=matchers, duration=duration, comment="",
                                            author="cli")) == 2
    assert message in capsys.readouterr().err
    with StateStore(db_path(settings.data_dir)) as store:
        assert store.silences() == []


def test_ragward_alerts_commands_are_wired(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The `ragward alerts ...` subcommands reach these handlers."""
    monkeypatch.setenv("RAGWARD_DATA_DIR", str(tmp_path))
    monkeypatch.setattr("ragward.cli.configure_logging", lambda *a: None)  # keep structlog as is
    assert ragward_main(["alerts", "silence", "tenant=acme", "--duration", "30m"]) == 0
    assert ragward_main(["alerts", "silences"]) == 0
    assert "tenant=acme" in capsys.readouterr().out


def test_consumer_needs_kafka_and_valid_rules(settings: Settings, tmp_path: Path) -> None:
    """Without RAGWARD_KAFKA_BOOTSTRAP the alert consumer refuses to start, naming it; a bad
    rules file is refused before anything connects."""
    with pytest.raises(ConfigError, match="RAGWARD_KAFKA_BOOTSTRAP"):
        consumer_main(settings, _args(port=None, group=None))
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {name: X, metric: nope, threshold: 1}\n")
    bad = settings.model_copy(update={"alert_rules": rules, "kafka_bootstrap": "127.0.0.1:1"})
    with pytest.raises(ConfigError, match='rule "X": unknown metric "nope"'):
        consumer_main(bad, _args(port=None, group=None))


async def test_consumer_app_serves_metrics_alerts_and_readiness(settings: Settings) -> None:
    """The consumer's app starts the consumer in its lifespan and serves /ready, /metrics
    (with the alerting metrics) and /api/alerts."""
    from litestar.testing import AsyncTestClient

    from alerting.consumer import AlertConsumer, create_alerts_app
    from telemetry.memory_bus import MemoryBus

    fast = settings.model_copy(update={"alert_eval_interval_s": 0.05})
    consumer = AlertConsumer(metrics_consumer_config(fast), alert_config(fast), MemoryBus(),
                             group_id="alerts-app")
    async with AsyncTestClient(app=create_alerts_app(consumer)) as client:
        for _ in range(100):
            if (await client.get("/ready")).status_code == 200:
                break
            await asyncio.sleep(0.02)
        assert (await client.get("/ready")).json()["group"] == "alerts-app"
        await asyncio.sleep(0.1)  # a few evaluations
        metrics = (await client.get("/metrics")).text
        assert 'ragward_alerts_firing{alertname="HighErrorRate"} 0.0' in metrics
        assert "ragward_alert_evaluation_seconds_count" in metrics
        body = (await client.get("/api/alerts")).json()
        assert body["rules"] == "default rules" and body["alerts"] == []
        assert (await client.get("/health")).json() == {"status": "ok"}
    assert not consumer.ready


def test_bad_smtp_url_is_refused_before_start(settings: Settings) -> None:
    """A malformed RAGWARD_SMTP_URL stops construction, naming the variable, not the secret."""
    from alerting.service import AlertService
    from tests.alert_helpers import ScriptedView

    bad = settings.model_copy(update={"smtp_url": SecretStr("mail.example.com:25:hunter2"),
                                      "alert_email_to": ["a@example.com"]})
    with pytest.raises(ConfigError, match="RAGWARD_SMTP_URL") as info:
        AlertService(alert_config(bad), ScriptedView(), None)
    assert "hunter2" not in str(info.value)
