"""docs/grafana-dashboard.json is a Grafana dashboard whose every query names series the broker
exports (rilke.server.metrics)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from rilke.server.broker import Broker
from rilke.server.config import BrokerConfig
from rilke.server.metrics import BrokerCollector, MetricsSources, RaftGroupMetrics, make_registry
from rilke.server.server import open_log_manager
from rilke.storage.scrubber import ScrubStats

DASHBOARD = Path(__file__).resolve().parents[3] / "docs" / "grafana-dashboard.json"
# PromQL words that look like metric names but are functions, keywords or labels.
_NOT_METRICS = {
    "sum", "max", "min", "avg", "by", "rate", "increase", "histogram_quantile", "le",
    "instance", "listener", "api", "code", "topic", "partition", "group", "follower",
    "label_values",
}  # fmt: skip


def exported_names(tmp_path: Path) -> set[str]:
    """Every family and sample name a broker exports with one partition, one API used (with
    an error), a scrubber and one Raft group."""
    config = BrokerConfig(data_dir=tmp_path / "data")
    broker = Broker(config, open_log_manager(config))
    try:
        broker.create_topic("t", 1)
        broker.stats.api("grpc", "Produce").latency.observe(0.001)
        broker.stats.api("grpc", "Produce").error(30)
        broker.stats.topic("t").produced(10, 1)
        raft = [RaftGroupMetrics("t", 0, 1, True, 1, {1: 0}, False)]
        collector = BrokerCollector(
            broker,
            MetricsSources(
                raft=lambda: raft,
                kafka_connections=lambda: 0,
                scrub_stats=ScrubStats,
            ),
        )
        text = generate_latest(make_registry(collector)).decode()
    finally:
        broker.close()
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(s.name for s in family.samples)
    return names


def metric_names(expr: str) -> set[str]:
    """The identifiers of a PromQL expression that are neither inside braces (label
    matchers), nor inside ``by (...)``, nor functions and keywords."""
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\bby\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {w for w in words if w not in _NOT_METRICS and not re.fullmatch(r"e\d*", w)}


def test_dashboard_is_grafana_json_and_every_expr_names_exported_series(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"] and isinstance(dashboard["schemaVersion"], int)
    exported = exported_names(tmp_path)
    seen: set[str] = set()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["type"] in ("timeseries", "stat", "gauge", "table"), panel["title"]
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, target["expr"]
            missing = names - exported
            assert not missing, f"{panel['title']}: {sorted(missing)} not exported"
            seen |= names
    # The dashboard shows the series: requests, errors, latency, bytes, lag, fsync,
    # connections, Raft.
    for wanted in (
        "rilke_requests_total",
        "rilke_request_errors_total",
        "rilke_request_duration_seconds_bucket",
        "rilke_topic_bytes_in_total",
        "rilke_consumer_group_lag_records",
        "rilke_consumer_group_lag_seconds",
        "rilke_fsync_duration_seconds_bucket",
        "rilke_connections",
        "rilke_partition_size_bytes",
        "rilke_partition_high_watermark",
        "rilke_raft_term",
        "rilke_under_replicated_partitions",
    ):
        assert wanted in seen, wanted


def test_the_name_check_can_fail() -> None:
    assert metric_names('sum by (topic) (rate(rilke_nothing_total{instance=~"x"}[1m]))') == {
        "rilke_nothing_total"
    }
