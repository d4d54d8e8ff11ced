"""Prometheus scrapes every role of the compose stack; the provisioned Grafana
dashboard "Order saga" has its panels and asks only for metrics that exist."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from api.metrics import ApiMetrics
from contracts.domains import DOMAINS
from ordersaga.runtime.settings import SERVICES, Settings
from services.common.metrics import HttpMetrics
from tests.deploy import files
from workflows import metrics as saga_metrics

# The Temporal SDK's own histograms (workers/runtime.py: seconds, Prometheus names).
SDK_HISTOGRAMS = (
    "temporal_activity_schedule_to_start_latency_seconds",
    "temporal_workflow_task_schedule_to_start_latency_seconds",
)
# Aggregation labels a panel may group by: none of them is an id.
LOW_CARDINALITY_LABELS = {"le", "status", "step", "outcome", "task_queue", "method", "route", "job"}
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "and", "or", "unless",
}  # fmt: skip


def _series_names(registry: CollectorRegistry) -> set[str]:
    names: set[str] = set()
    for family in registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{s}" for s in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


def known_metric_names() -> set[str]:
    names = _series_names(ApiMetrics().registry) | _series_names(HttpMetrics("any").registry)
    for counter in (
        saga_metrics.ORDERS_STARTED,
        saga_metrics.ORDERS_FINISHED,
        saga_metrics.ORDERS_PARKED,
        saga_metrics.COMPENSATIONS,
    ):
        names.add(f"{counter}_total")
    for histogram in (saga_metrics.STEP_DURATION, saga_metrics.ORDER_DURATION, *SDK_HISTOGRAMS):
        names.update(f"{histogram}{s}" for s in ("_bucket", "_sum", "_count"))
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", text)  # grouping labels
    names: set[str] = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        following = text[match.end() :].lstrip()
        if following.startswith("(") or match.group() in PROMQL_WORDS:
            continue  # a function or aggregation, or a keyword
        names.add(match.group())
    return names


def grouping_labels(expr: str) -> set[str]:
    labels: set[str] = set()
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        labels.update(label.strip() for label in group.split(",") if label.strip())
    return labels


def dashboard() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(files.DASHBOARD.read_text())
    return result


def panels_by_title() -> dict[str, dict[str, Any]]:
    return {panel["title"]: panel for panel in dashboard()["panels"]}


def exprs(panel: dict[str, Any]) -> list[str]:
    return [target["expr"] for target in panel["targets"]]


# ---- the checks' own failure paths ----


def test_metric_name_extraction() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, step) "
        '(rate(ordersaga_step_duration_seconds_bucket{status=~"A|B"}[$__rate_interval])))'
        " / on (job) group_left sum(up)"
    )
    assert metric_names(expr) == {"ordersaga_step_duration_seconds_bucket", "up"}
    assert grouping_labels(expr) == {"le", "step"}
    # A misspelt metric is reported, so the dashboard check below can fail.
    assert "ordersaga_order_started_total" not in known_metric_names()
    assert "ordersaga_orders_started_total" in known_metric_names()


# ---- Grafana ----


def test_dashboard_is_the_order_saga_dashboard() -> None:
    board = dashboard()
    assert board["title"] == "Order saga"
    assert board["uid"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(
    ("title", "required"),
    [
        ("Throughput", {"ordersaga_orders_started_total", "ordersaga_orders_finished_total"}),
        (
            "Terminal statuses",
            {"ordersaga_orders_finished_total", "ordersaga_orders_parked_total"},
        ),
        ("Compensations by step", {"ordersaga_compensations_total"}),
        ("Step latency (p50, p95)", {"ordersaga_step_duration_seconds_bucket"}),
        (
            "Temporal schedule-to-start latency (p95)",
            {f"{name}_bucket" for name in SDK_HISTOGRAMS},
        ),
        ("API requests", {"ordersaga_api_requests_total"}),
        ("API latency (p95)", {"ordersaga_api_request_duration_seconds_bucket"}),
    ],
)
def test_dashboard_panel(title: str, required: set[str]) -> None:
    panel = panels_by_title()[title]
    used = set().union(*(metric_names(e) for e in exprs(panel)))
    assert required <= used, f"{title} does not show {required - used}"
    if title == "Terminal statuses":
        finished = [e for e in exprs(panel) if "ordersaga_orders_finished_total" in e]
        assert finished
        assert all("status" in grouping_labels(e) for e in finished)
    if title == "Compensations by step":
        assert all("step" in grouping_labels(e) for e in exprs(panel))
    if "latency" in title:
        assert all(e.startswith("histogram_quantile(") for e in exprs(panel))
        assert all("le" in grouping_labels(e) for e in exprs(panel))


def test_dashboard_uses_only_metrics_that_exist_and_no_id_labels() -> None:
    known = known_metric_names()
    for panel in dashboard()["panels"]:
        for expr in exprs(panel):
            unknown = metric_names(expr) - known
            assert not unknown, f"{panel['title']}: {unknown} is not exported by ordersaga"
            labels = grouping_labels(expr)
            assert labels <= LOW_CARDINALITY_LABELS, f"{panel['title']}: groups by {labels}"


def test_grafana_provisioning_matches_the_compose_mounts() -> None:
    datasources = files.load_yaml(files.GRAFANA_PROVISIONING / "datasources" / "prometheus.yml")[
        "datasources"
    ]
    [prometheus] = datasources
    assert prometheus["type"] == "prometheus"
    assert prometheus["url"] == "http://prometheus:9090"
    for panel in dashboard()["panels"]:
        assert panel["datasource"]["uid"] == prometheus["uid"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == prometheus["uid"], panel["title"]

    [provider] = files.load_yaml(files.GRAFANA_PROVISIONING / "dashboards" / "ordersaga.yml")[
        "providers"
    ]
    grafana = files.services()["grafana"]
    mounts = {
        v.split(":")[1]: (files.ROOT / v.split(":")[0]).resolve()
        for v in grafana["volumes"]
        if v.startswith(".")
    }
    assert mounts[provider["options"]["path"]] == files.DASHBOARD.parent
    assert mounts["/etc/grafana/provisioning"] == files.GRAFANA_PROVISIONING
    home = files.environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    directory, _, name = home.rpartition("/")
    assert (mounts[directory] / name).is_file()


# ---- Prometheus ----


def _jobs() -> dict[str, dict[str, Any]]:
    config = files.load_yaml(files.PROMETHEUS_CONFIG)
    return {job["job_name"]: job for job in config["scrape_configs"]}


def _static_target(job: dict[str, Any]) -> str:
    [static] = job["static_configs"]
    [target] = static["targets"]
    assert isinstance(target, str)
    return target


def test_prometheus_scrapes_the_api_and_every_service() -> None:
    jobs = _jobs()
    compose = files.services()
    api_port = files.environment(compose["api"])["ORDERSAGA_API_PORT"]
    assert _static_target(jobs["api"]) == f"api:{api_port}"
    for service in SERVICES:
        port = files.environment(compose[service])[f"ORDERSAGA_{service.upper()}_PORT"]
        assert _static_target(jobs[service]) == f"{service}:{port}"
        assert jobs[service].get("metrics_path", "/metrics") == "/metrics"


def test_prometheus_finds_every_worker_replica() -> None:
    """DNS service discovery: each replica of a scaled worker service is a target."""
    jobs = _jobs()
    metrics_port = Settings.model_fields["worker_metrics_port"].default
    for queue in DOMAINS.task_queues:
        name = f"worker-{queue}"
        worker_env = files.environment(files.services()[name])
        assert int(worker_env["ORDERSAGA_WORKER_METRICS_PORT"]) == metrics_port
        [discovery] = jobs[name]["dns_sd_configs"]
        assert discovery["names"] == [name]
        assert discovery["type"] == "A"
        assert discovery["port"] == metrics_port
        assert "static_configs" not in jobs[name]


def test_prometheus_scrapes_the_temporal_server_and_nothing_unknown() -> None:
    jobs = _jobs()
    endpoint = files.environment(files.services()["temporal"])["PROMETHEUS_ENDPOINT"]
    assert _static_target(jobs["temporal"]) == f"temporal:{endpoint.rpartition(':')[2]}"
    roles = {name for name, s in files.services().items() if files.is_ordersaga(s)}
    assert set(jobs) == roles | {"temporal"}
    mounted = [v for v in files.services()["prometheus"]["volumes"] if v.startswith(".")]
    assert any(
        (files.ROOT / v.split(":")[0]).resolve() == files.PROMETHEUS_CONFIG
        and v.split(":")[1] == "/etc/prometheus/prometheus.yml"
        for v in mounted
    )
