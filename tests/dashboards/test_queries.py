"""What the dashboards query: only defined variables, documented Redis keys, exported metrics; and
the helpers that turn panels into the command lines the plugin sends."""

from __future__ import annotations

import json
import re

import pytest
from hfrisk.model.contract.card import default_card
from hfrisk.stream.sinks.keys import KEY_SCHEMA

from hfrisk import dashboards as dash
from hfrisk.core.config import StreamSettings
from tests.dashboards.boards import BOARDS
from tests.dashboards.boards import panels as _panels

# Grafana's global variables (https://grafana.com/docs/grafana/latest/dashboards/variables/add-template-variables/).
GLOBAL_VARIABLES = {"__rate_interval", "__interval", "__range", "__from", "__to", "__value", "__url_time_range", "__all"}
# Triton's metrics endpoint (the worker's come from stream/worker/metrics.py itself, below).
TRITON_METRICS = {
    "nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count", "nv_inference_exec_count",
    "nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us", "nv_inference_request_duration_us",
}


def _variable_names(text: str) -> set[str]:
    return {a or b for a, b in re.findall(r"\$\{(\w+)(?:[.:]\w+)?\}|\$(\w+)", text)}


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_queries_and_titles_use_only_defined_variables(name):
    board = BOARDS[name]
    defined = {v["name"] for v in board["templating"]["list"]} | GLOBAL_VARIABLES
    # Transformations name data-frame fields (the Redis plugin's "$streamId"), not variables.
    panels = [{k: v for k, v in p.items() if k != "transformations"} for p in board["panels"]]
    text = json.dumps([panels, board["templating"]])
    assert _variable_names(text) - defined == set()


def test_ward_reads_only_documented_redis_keys_with_supported_commands():
    patterns = [re.compile("^" + re.escape(spec.pattern).replace(r"\{prefix\}", "hfrisk")
                           .replace(r"\{patient_id\}", "bed-1").replace(r"\{window_id\}", r"[^:]+") + "$")
                for spec in KEY_SCHEMA]
    values = {"patient": "bed-1", "patients": "bed-1", "__from": "1", "__to": "2"}
    queries = dash.panel_queries(BOARDS["ward"], values)
    assert {q.kind for q in queries} == {"redis"}
    for q in queries:
        command, key, *_ = dash.split_command(q.query)
        assert command in {"HGETALL", "HGET", "ZRANGE", "ZREVRANGE", "XREVRANGE"}, q
        assert any(p.match(key) for p in patterns), f"{q.title}: {key} is not in docs/redis-keys.md"


def test_operations_queries_name_only_exported_metrics():
    """Every series the panels and the Prometheus rules query is one the worker's StreamMetrics or
    Triton exports or a rule records, and every worker metric has a panel or a rule."""
    from hfrisk.stream.worker.metrics import StreamMetrics

    families = list(StreamMetrics().registry.collect())
    # The series names each family exposes (labelled families have no samples until first use).
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    worker_samples = {f.name + suffix for f in families for suffix in suffixes[f.type]}
    queries = dash.panel_queries(BOARDS["operations"])
    assert {q.kind for q in queries} == {"prometheus"}
    rules = [r for g in dash.prometheus_rules()["groups"] for r in g["rules"]]
    exprs = [q.query for q in queries] + [r["expr"] for r in rules]
    named = {m for e in exprs for m in re.findall(r"\b((?:hfrisk|nv)_\w+)", e)}
    recorded = {m for e in exprs for m in re.findall(r"\b(hfrisk:\w+)", e)}
    assert recorded <= {r["record"] for r in rules if "record" in r}
    assert {m for m in named if m.startswith("hfrisk_")} <= worker_samples
    assert {m for m in named if m.startswith("nv_")} == TRITON_METRICS
    used_families = {re.sub(r"_(bucket|sum|count|total)$", "", m) for m in named}
    assert {f.name for f in families} <= used_families, "a worker metric without a panel"


def test_thresholds_follow_the_stream_settings():
    stream = StreamSettings(risk_threshold=2.5, clear_threshold=1.5)
    ward = dash.build_dashboards(stream)["ward"]
    ranking = next(p for p in _panels(ward) if p["title"] == "Patients by current risk")
    steps = [s["value"] for s in ranking["fieldConfig"]["defaults"]["thresholds"]["steps"]]
    assert steps == [None, 1.5, 2.5]


def test_trend_regex_splits_the_sinks_trend_members():
    trend = next(p for p in _panels(BOARDS["ward"]) if p["title"] == "Risk trend")
    js = next(t["options"]["regExp"] for t in trend["transformations"] if t["id"] == "extractFields")
    pattern = re.compile(js.strip("/").replace("(?<", "(?P<"))
    match = pattern.match("1700000000123456-17:-0.4321")  # RedisSink's member: "<window_id>:<log_risk>"
    assert match.groupdict() == {"window_id": "1700000000123456-17", "log_risk": "-0.4321"}


def test_lead_attention_panel_covers_the_cards_leads():
    panel = next(p for p in _panels(BOARDS["ward"]) if p["title"] == "Lead attention")
    assert str(len(default_card().input.leads)) in panel["description"]


# -- helpers -------------------------------------------------------------------------------------------


def test_render_query_substitutes_both_forms_and_keeps_unknown_names():
    values = {"prefix": "hf", "patient": "bed 7", "__rate_interval": "30s"}
    assert dash.render_query("HGETALL ${prefix}:latest:${patient}", values) == "HGETALL hf:latest:bed 7"
    assert dash.render_query("rate(x[$__rate_interval]) $unknown", values) == "rate(x[30s]) $unknown"


def test_redis_command_mirrors_the_plugin_backend():
    assert dash.redis_command({"command": "zrange", "keyName": "k", "min": "0", "max": "-1"}) == "ZRANGE k 0 -1 WITHSCORES"
    assert dash.redis_command({"command": "zrange", "keyName": "k", "min": "1", "max": "2",
                               "zrangeQuery": "BYSCORE"}) == "ZRANGE k 1 2 BYSCORE WITHSCORES"
    assert dash.redis_command({"command": "xrevrange", "keyName": "s", "count": 5}) == \
        "XREVRANGE s ${__to}-0 ${__from}-0 COUNT 5"
    assert dash.redis_command({"command": "hget", "keyName": "h", "field": "f"}) == "HGET h f"
    assert dash.redis_command({"query": "ZCARD z"}) == "ZCARD z"
    with pytest.raises(ValueError):
        dash.redis_command({"command": "ts.range", "keyName": "k"})


def test_panel_queries_fill_constants_and_given_variables():
    queries = dash.panel_queries(BOARDS["ward"], {"patient": "bed-2"})
    assert ("Risk trend", "redis", "ZRANGE hfrisk:trend:bed-2 -720 -1 WITHSCORES") in queries
