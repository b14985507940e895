"""deploy/monitoring: the Grafana dashboard, the alert rules and the scrape config.

No broker and no Prometheus server: the files are parsed here, and checked by
Prometheus's own `promtool` (Debian's `prometheus` package; .ci/run installs
it): the rules (`check rules`), their unit tests (`test rules` on
prometheus-alerts.test.yaml: input series that make each alert fire, and
others that must not), the scrape config (`check config`), and every
dashboard query (as recording rules, Grafana's variables replaced). Without
promtool those are skipped with the reason, and fail under CI=true. That the
series they name exist on a running worker: tests/e2e/test_monitoring_metrics.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from processor.metrics import WorkerMetrics
from tests.helpers import REPO_ROOT
from tests.monitoring import (
    ALERT_TESTS,
    ALERTS,
    OPERATIONS,
    PROMETHEUS,
    alert_rules,
    dashboard_expressions,
    exposed_series,
    load_dashboard,
    metric_names,
    operations_sections,
    panels,
    promtool,
    rule_expressions,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
ALERT_NAMES = {
    "LedgerLagGrowing",
    "LedgerPartitionNotCommitting",
    "LedgerDeadLetters",
    "LedgerWorkerNotReady",
    "LedgerNoWorkerReady",
    "LedgerWorkerDown",
}
#: Grafana's variables in the queries, and what promtool reads in their place.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$job": ".*", "$instance": ".*"}
#: `docs/operations.md, "Alerts" and "Scaling"`: the sections an annotation points to.
SECTION_REFERENCE = re.compile(r'docs/operations\.md,((?:\s*(?:,|and)?\s*"[^"]+")+)')


def load_yaml(path: Path) -> Any:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (the `test` extra)")
    return yaml.safe_load(path.read_text())


def yaml_documents(path: Path) -> list[Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (the `test` extra)")
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def run_promtool(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


# --- the dashboard ------------------------------------------------------------------------


def test_every_dashboard_panel_queries_the_datasource_variable_with_promql() -> None:
    found = list(panels(load_dashboard()))
    assert len(found) >= 12, [p["title"] for p in found]
    for panel in found:
        title = panel["title"]
        assert panel["datasource"] == DATASOURCE, title
        assert panel["targets"], f"{title}: no query"
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, title
            assert target["expr"].strip(), f"{title}: an empty expression"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids), f"{title}: refIds repeat"
    ids = [p["id"] for p in load_dashboard()["panels"]]
    assert len(set(ids)) == len(ids), "panel ids repeat"


def test_the_dashboard_takes_its_datasource_job_and_instances_from_variables() -> None:
    dashboard = load_dashboard()
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("job", "instance"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"] == DATASOURCE
    # An instance picked from the job picked.
    assert "$job" in variables["instance"]["definition"]
    assert variables["instance"]["multi"] and variables["instance"]["includeAll"]


def test_every_dashboard_query_keeps_to_the_job_and_instances_picked() -> None:
    # Workers are scraped per pod: a selector without them would mix in
    # another deployment's workers.
    for expr in dashboard_expressions():
        names = re.findall(r"(?<![\w:])(?:ledger_\w+|up)\b(\{[^}]*\})?", expr)
        assert names, expr
        for labels in names:
            assert 'job=~"$job"' in labels and 'instance=~"$instance"' in labels, expr


def test_the_dashboard_shows_every_series_a_worker_exports() -> None:
    # A metric added to processor/metrics.py later needs a panel too.
    registry = WorkerMetrics("transactions").registry
    families = [(f.name, f.type) for f in registry.collect() if not f.name.endswith("_created")]
    used = metric_names(dashboard_expressions())
    missing = {name for name, kind in families if not exposed_series([(name, kind)]) & used}
    assert not missing, f"no panel shows {sorted(missing)}"


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    # Grafana's variables are not PromQL: replaced by values of the same kind,
    # each query becomes a recording rule, which `check rules` parses.
    rules = []
    for n, expr in enumerate(dashboard_expressions()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"a Grafana variable promtool cannot read: {expr}"
        rules.append({"record": f"dashboard:query_{n}", "expr": expr})
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (the `test` extra)")
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = run_promtool("check", "rules", str(path))
    assert f"SUCCESS: {len(rules)} rules found" in out


# --- the alert rules ----------------------------------------------------------------------


def test_the_rules_are_one_group_of_the_expected_alerts_each_with_a_severity_and_text() -> None:
    (group,) = load_yaml(ALERTS)["groups"]
    assert group["name"] and group["rules"]
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert sorted(names) == sorted(ALERT_NAMES), names
    for rule in rules:
        name = rule["alert"]
        assert str(rule["expr"]).strip(), name
        assert re.fullmatch(r"\d+[smh]", rule["for"]), f"{name}: a `for` duration"
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        assert "docs/operations.md" in annotations["description"], f"{name}: what to do"
    # Only `up` is Prometheus's own; every other series is the workers'.
    for expr in rule_expressions():
        others = set(re.findall(r"\b([a-z_]+)\{", expr)) - {"up"}
        assert all(name.startswith("ledger_") for name in others), expr


def test_every_docs_section_an_alert_points_to_exists() -> None:
    sections = operations_sections()
    for rule in alert_rules():
        description = " ".join(rule["annotations"]["description"].split())
        (reference,) = SECTION_REFERENCE.findall(description)
        named = re.findall(r'"([^"]+)"', reference)
        assert "Alerts" in named, f"{rule['alert']}: point to the Alerts section"
        for section in named:
            assert section in sections, f"{rule['alert']}: no section {section!r} in {OPERATIONS}"


def test_docs_operations_explains_every_alert() -> None:
    text = OPERATIONS.read_text()
    for name in ALERT_NAMES:
        assert f"`{name}`" in text, f"docs/operations.md does not explain {name}"


def test_the_alert_unit_tests_make_each_alert_fire_and_not_fire() -> None:
    tests = load_yaml(ALERT_TESTS)
    assert tests["rule_files"] == [ALERTS.name]
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert fired == ALERT_NAMES, f"never seen firing: {ALERT_NAMES - fired}"
    assert quiet == ALERT_NAMES, f"never seen quiet: {ALERT_NAMES - quiet}"


def test_promtool_accepts_the_alert_rules() -> None:
    out = run_promtool("check", "rules", str(ALERTS))
    assert f"SUCCESS: {len(ALERT_NAMES)} rules found" in out


def test_the_alert_rules_pass_their_promtool_unit_tests() -> None:
    # rule_files are relative to the test file.
    out = run_promtool("test", "rules", ALERT_TESTS.name, cwd=ALERT_TESTS.parent)
    assert "SUCCESS" in out


# --- the scrape config --------------------------------------------------------------------


def test_the_scrape_config_loads_the_rules_and_finds_the_workers_of_compose_and_k8s() -> None:
    config = load_yaml(PROMETHEUS)
    assert config["rule_files"] == [ALERTS.name]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"ledger-worker", "ledger-worker-compose"}
    for job in jobs.values():
        assert job["metrics_path"] == "/metrics"

    compose = load_yaml(REPO_ROOT / "compose.yaml")["services"]
    (dns,) = jobs["ledger-worker-compose"]["dns_sd_configs"]
    (service,) = dns["names"]
    assert dns["port"] == int(compose[service]["environment"]["LEDGER_WEB_PORT"])

    kubernetes = jobs["ledger-worker"]
    assert kubernetes["kubernetes_sd_configs"] == [{"role": "pod"}]
    (keep,) = (r for r in kubernetes["relabel_configs"] if r.get("action") == "keep")
    statefulset = next(
        doc
        for doc in yaml_documents(REPO_ROOT / "deploy" / "k8s" / "worker-statefulset.yaml")
        if doc["kind"] == "StatefulSet"
    )
    pod = statefulset["spec"]["template"]
    labels = pod["metadata"]["labels"]
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    name, component, port = keep["regex"].split(";")
    assert labels["app.kubernetes.io/name"] == name
    assert labels["app.kubernetes.io/component"] == component
    assert ports[port] == dns["port"]


def test_promtool_accepts_the_scrape_config(tmp_path: Path) -> None:
    # Debian builds Prometheus without Kubernetes service discovery, so its
    # promtool refuses `kubernetes_sd_configs` as an unknown field. There the
    # file is checked without that one block (the test above reads it); the
    # relabelling that follows it is still promtool's to check.
    done = subprocess.run(
        [promtool(), "check", "config", str(PROMETHEUS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if "field kubernetes_sd_configs not found" in done.stdout + done.stderr:
        config = load_yaml(PROMETHEUS)
        for job in config["scrape_configs"]:
            job.pop("kubernetes_sd_configs", None)
        yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (the `test` extra)")
        (tmp_path / PROMETHEUS.name).write_text(yaml.safe_dump(config))
        shutil.copy(ALERTS, tmp_path / ALERTS.name)  # rule_files are relative to the config
        out = run_promtool("check", "config", str(tmp_path / PROMETHEUS.name))
    else:
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
        out = done.stdout
    assert "SUCCESS" in out
    assert f"SUCCESS: {len(ALERT_NAMES)} rules found" in out
