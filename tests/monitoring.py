"""The monitoring files of deploy/monitoring, as tests read them.

The dashboard and the alert rules name the workers' series in PromQL; the
tests check those names against a live worker's /metrics
(tests/e2e/test_monitoring_metrics.py) and the files themselves with
Prometheus's own `promtool` (tests/integration/test_monitoring_files.py).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from tests.helpers import REPO_ROOT, cannot_run

MONITORING = REPO_ROOT / "deploy" / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"
ALERTS = MONITORING / "prometheus-alerts.yaml"
ALERT_TESTS = MONITORING / "prometheus-alerts.test.yaml"
PROMETHEUS = MONITORING / "prometheus.yaml"
OPERATIONS = REPO_ROOT / "docs" / "operations.md"

#: The series a family of each type puts on /metrics, by suffix (the text
#: format; prometheus_client's parser reports a counter's family without `_total`).
SERIES_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}
#: A double-quoted PromQL string: label values, which may look like anything.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
#: A metric name of ours: PromQL's names also hold `:`, which ours never do.
_LEDGER_NAME = re.compile(r"(?<![\w:])ledger_[A-Za-z0-9_]*")


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel but the rows, also those inside a collapsed row."""
    for panel in dashboard["panels"]:
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def dashboard_expressions() -> list[str]:
    return [
        target["expr"]
        for panel in panels(load_dashboard())
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def load_rules() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (the `test` extra)")
    rules: dict[str, Any] = yaml.safe_load(ALERTS.read_text())
    return rules


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_rules()["groups"] for rule in group["rules"]]


def rule_expressions() -> list[str]:
    return [str(rule["expr"]) for rule in alert_rules()]


def metric_names(expressions: Iterable[str]) -> set[str]:
    """The `ledger_` series names an expression selects (label values left out)."""
    return {name for expr in expressions for name in _LEDGER_NAME.findall(_STRING.sub('""', expr))}


def exposed_series(families: Iterable[tuple[str, str]]) -> set[str]:
    """The series names a scrape offers, from its families as the parser reports them."""
    return {name + suffix for name, kind in families for suffix in SERIES_SUFFIXES.get(kind, ("",))}


def promtool() -> str:
    """The path of `promtool`; skipped where it is missing, failed under CI=true."""
    found = shutil.which("promtool")
    if found:
        return found
    why = (
        "promtool is not installed, so the monitoring files are not checked by Prometheus's "
        "own tool here (Debian: apt-get install prometheus)"
    )
    cannot_run("the promtool checks", f"{why}; .ci/run installs it")


def operations_sections() -> set[str]:
    """The headings of docs/operations.md, without their `#`s."""
    return {
        line.lstrip("#").strip()
        for line in OPERATIONS.read_text().splitlines()
        if re.match(r"#{2,4} ", line)
    }
