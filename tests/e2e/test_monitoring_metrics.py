"""Every series the Grafana dashboard and the alert rules use is on a running worker's /metrics.

The names come from the PromQL of deploy/monitoring (every `ledger_` name;
`up` and `time()` are Prometheus's own), the scrape from a worker that has
processed a small dirty workload and answered one balance API request. A
name must be a series the scrape offers: a family the parser reports, with
the suffix its type gives it (`_total` for a counter, `_bucket`, `_sum` and
`_count` for a histogram). A family is declared (HELP and TYPE) before its
first sample; the test also wants samples, except where one worker cannot
have them:

- `ledger_standby_lag_records`: a standby copy is kept by a worker other
  than the partition's owner, and there is one worker here;
- the balance API's two series, while the worker does not serve
  `/accounts/<client>` at all (aiohttp's plain 404 for an unknown route):
  its requests are counted only once the route exists. A route that answers
  (any status of its own) must count the request.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.workload import generate
from tests.monitoring import (
    SERIES_SUFFIXES,
    dashboard_expressions,
    exposed_series,
    metric_names,
    rule_expressions,
)
from tests.pipeline import Pipeline

pytestmark = pytest.mark.kafka

#: Families one worker leaves without samples, and why (the module's docstring).
EMPTY_WITH_ONE_WORKER = {"ledger_standby_lag_records"}
API_FAMILIES = {"ledger_api_requests", "ledger_api_request_duration_seconds"}


def get(url: str) -> tuple[int, str, bytes]:
    """Status, content type and body; an error status is an answer too."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status), response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get_content_type(), exc.read()


def series_of(families: set[str], kinds: dict[str, str]) -> set[str]:
    return exposed_series((name, kinds[name]) for name in families if name in kinds)


def test_every_series_the_dashboard_and_the_alert_rules_use_is_on_a_workers_metrics(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    used = metric_names(dashboard_expressions()) | metric_names(rule_expressions())
    assert len(used) >= 15, used
    csv = tmp_path / "in.csv"
    lines = list(generate(3_000, 100, seed=16, dirty=True))
    csv.write_text("".join(lines))
    client = next(m.group(1) for m in map(re.compile(r"deposit,(\d+),").match, lines) if m)

    worker = pipeline.start_worker(web=True)
    pipeline.wait_ready(worker)
    assert pipeline.produce(csv).returncode == 0
    exported = pipeline.export()
    assert exported.returncode == 0, exported.stderr + pipeline.logs().encode()

    # Whatever it answers: the request is what makes the API's series appear.
    status, content_type, _body = get(pipeline.web_url(worker, f"/accounts/{client}"))
    route_served = not (status == 404 and content_type == "text/plain")

    metrics = pipeline.web_url(worker, "/metrics")
    may_be_empty = EMPTY_WITH_ONE_WORKER | (set() if route_served else API_FAMILIES)
    # Lag needs the next fetch's high watermark: give the worker a moment.
    deadline = time.monotonic() + 30
    while True:
        code, _type, body = get(metrics)
        assert code == 200
        families = list(text_string_to_metric_families(body.decode()))
        kinds = {family.name: family.type for family in families}
        sampled = {sample.name for family in families for sample in family.samples}
        missing = used - exposed_series(kinds.items())
        empty = used - sampled - series_of(may_be_empty, kinds)
        # Families are declared when the worker starts: a missing one stays missing.
        if missing or not empty or time.monotonic() > deadline:
            break
        time.sleep(0.5)

    assert not missing, (
        f"the dashboard or the alert rules use {sorted(missing)}, which a worker does not "
        f"export; it exports {sorted(exposed_series(kinds.items()))}"
    )
    assert not empty, f"no samples of {sorted(empty)} after a workload (/accounts: {status})"
    unknown = set(kinds.values()) - set(SERIES_SUFFIXES)
    assert not unknown, f"families of types {unknown}: which series do they put on /metrics?"
