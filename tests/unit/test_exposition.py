"""Label values in the Prometheus exposition are escaped fully, whatever a tenant is called."""

from __future__ import annotations

import shutil
import subprocess

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from telemetry.exposition import RollingCollector, render, safe_label_value
from telemetry.rolling import RollingMetrics
from tests.unit.test_telemetry_rolling import T0, audit, usage

HOSTILE = 'ev\ril\0"quoted"\\back\nline\x1b\x7f\x85\u2028end'


def _exposition_with_hostile_tenant() -> str:
    registry = CollectorRegistry()
    view = RollingMetrics(clock=lambda: T0)
    view.ingest([audit(T0 - 5, tenant=HOSTILE), usage(T0 - 5, tenant=HOSTILE)])
    registry.register(RollingCollector(view))
    Counter("ragward_test_requests", "a client-library metric", ["tenant"],
            registry=registry).labels(HOSTILE).inc()
    return render(registry).decode("utf-8")


def test_every_sample_stays_on_one_line_and_parses_back() -> None:
    """A tenant holding CR, NUL, quote, backslash, LF and other controls yields one
    sample line per sample: no raw control character is written, and a Prometheus parser
    reads the label back as the escaped text (quote, backslash and LF exactly)."""
    text = _exposition_with_hostile_tenant()
    assert "\r" not in text and "\0" not in text and "\x1b" not in text
    assert "\x7f" not in text and "\x85" not in text and "\u2028" not in text
    for line in text.splitlines():  # splitlines also breaks at CR, NEL, U+2028
        assert line.startswith("#") or line.startswith("ragward_"), repr(line)
    tenants = {
        sample.labels["tenant"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples if "tenant" in sample.labels
    }
    assert tenants == {safe_label_value(HOSTILE)}
    assert safe_label_value(HOSTILE) == (
        'ev\\x0dil\\x00"quoted"\\back\nline\\x1b\\x7f\\x85\\u2028end')


def test_promtool_accepts_the_exposition() -> None:
    """Debian's `promtool check metrics` accepts it: the text format holds."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by deploy/install-system-deps.sh"
    result = subprocess.run([promtool, "check", "metrics"], input=_exposition_with_hostile_tenant(),
                            text=True, capture_output=True, timeout=30, check=False)
    assert result.returncode == 0 and not result.stdout + result.stderr, (
        result.stdout + result.stderr)


def test_ordinary_label_values_are_untouched() -> None:
    """Names without control characters (Unicode included) are exposed as they are."""
    assert safe_label_value("acme-公司_1.x") == "acme-公司_1.x"
