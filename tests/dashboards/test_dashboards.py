"""The generated Grafana dashboards: committed files up to date, valid against Grafana's schema
(as grafana-foundation-sdk models it) and a strict model of the subset hfrisk uses, queries that
only name real variables, Redis keys and metrics, and pushing to a (fake) Grafana HTTP API."""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from hfrisk.model.contract.card import default_card
from hfrisk.stream.sinks.keys import KEY_SCHEMA
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)
from typer.testing import CliRunner

from hfrisk import dashboards as dash
from hfrisk.core.config import StreamSettings

ROOT = Path(__file__).resolve().parents[2]
BOARDS = dash.build_dashboards()
# Grafana's global variables (https://grafana.com/docs/grafana/latest/dashboards/variables/add-template-variables/).
GLOBAL_VARIABLES = {"__rate_interval", "__interval", "__range", "__from", "__to", "__value", "__url_time_range", "__all"}
# Triton's metrics endpoint (the worker's come from stream/worker/metrics.py itself, below).
TRITON_METRICS = {
    "nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count", "nv_inference_exec_count",
    "nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us", "nv_inference_request_duration_us",
}


def _panels(board: dict) -> list[dict]:
    return [p for p in board["panels"] if p["type"] != "row"]


# -- the committed files are what the code generates ------------------------------------------------


def test_committed_files_are_the_generated_ones():
    for relative, text in dash.rendered_files().items():
        path = ROOT / "dashboards" / relative
        assert path.is_file(), f"{path} missing: run `hfrisk dashboards write`"
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale: run `hfrisk dashboards write`"


def test_write_command_regenerates_every_file(tmp_path):
    result = CliRunner().invoke(dash.app, ["write", "--out-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for relative, text in dash.rendered_files().items():
        assert (tmp_path / relative).read_text(encoding="utf-8") == text


def test_generation_is_deterministic():
    assert dash.build_dashboards() == BOARDS


# -- schema ------------------------------------------------------------------------------------------


def _unknown_keys(original: Any, parsed: Any, path: str = "") -> list[str]:
    """Paths of ``original`` that the schema models dropped or changed on a round trip."""
    if isinstance(original, dict):
        if not isinstance(parsed, dict):
            return [path]
        return [p for k, v in original.items()
                for p in (_unknown_keys(v, parsed[k], f"{path}/{k}") if k in parsed else [f"{path}/{k}"])]
    if isinstance(original, list):
        if not isinstance(parsed, list) or len(parsed) != len(original):
            return [path]
        return [p for i, (a, b) in enumerate(zip(original, parsed)) for p in _unknown_keys(a, b, f"{path}[{i}]")]
    return [] if original == parsed else [f"{path}: {original!r} != {parsed!r}"]


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_dashboard_round_trips_through_grafana_schema_models(name):
    """grafana-foundation-sdk's models are generated from Grafana's dashboard schema (and each
    panel plugin's options/fieldConfig schema); parsing drops any key the schema does not know,
    so a lossless round trip means every key we write is one Grafana defines."""
    from grafana_foundation_sdk.cog import plugins, runtime
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    plugins.register_default_plugins()
    runtime.register_dataquery_variant(runtime.DataqueryConfig(dash.REDIS_PLUGIN, dash.RedisQuery.from_json))
    parsed = json.loads(json.dumps(Dashboard.from_json(BOARDS[name]), cls=JSONEncoder))
    assert _unknown_keys(BOARDS[name], parsed) == []


# A strict model of the part of Grafana's dashboard JSON model hfrisk writes: types checked
# without coercion, unknown keys allowed (the round trip above covers those).
class _Strict(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class GridPos(_Strict):
    x: StrictInt = Field(ge=0, le=23)
    y: StrictInt = Field(ge=0)
    w: StrictInt = Field(ge=1, le=24)
    h: StrictInt = Field(ge=1)

    @model_validator(mode="after")
    def _fits(self):
        assert self.x + self.w <= 24, "panel runs past the 24-column grid"
        return self


class DataSourceRef(_Strict):
    type: Literal["prometheus", "redis-datasource"]
    uid: Literal["${prometheus}", "${redis}"]


class Target(_Strict):
    refId: StrictStr = Field(pattern=r"^[A-Z]$")
    datasource: DataSourceRef | None = None
    expr: StrictStr | None = None
    type: Literal["command", "cli"] | None = None
    command: StrictStr | None = None
    keyName: StrictStr | None = None
    query: StrictStr | None = None


class Threshold(_Strict):
    value: StrictFloat | StrictInt | None
    color: StrictStr


class Thresholds(_Strict):
    mode: Literal["absolute", "percentage"]
    steps: list[Threshold] = Field(min_length=1)

    @field_validator("steps")
    @classmethod
    def _base_first(cls, steps):
        assert steps[0].value is None, "the first threshold step is the base (value null)"
        values = [s.value for s in steps[1:]]
        assert values == sorted(values), "threshold steps must ascend"
        return steps


class FieldDefaults(_Strict):
    unit: StrictStr | None = None
    decimals: StrictInt | StrictFloat | None = None
    min: StrictInt | StrictFloat | None = None
    max: StrictInt | StrictFloat | None = None
    noValue: StrictStr | None = None
    thresholds: Thresholds | None = None


class Override(_Strict):
    matcher: dict[str, StrictStr]
    properties: list[dict[str, Any]] = Field(min_length=1)


class FieldConfig(_Strict):
    defaults: FieldDefaults
    overrides: list[Override]


class Transformation(_Strict):
    id: Literal["reduce", "organize", "sortBy", "convertFieldType", "extractFields"]
    options: dict[str, Any]


class Panel(_Strict):
    id: StrictInt
    type: Literal["timeseries", "table", "stat", "bargauge"]
    title: StrictStr = Field(min_length=1)
    description: StrictStr | None = None
    gridPos: GridPos
    datasource: DataSourceRef
    targets: list[Target] = Field(min_length=1)
    fieldConfig: FieldConfig | None = None
    options: dict[str, Any] | None = None
    transformations: list[Transformation] | None = None
    repeat: StrictStr | None = None


class Row(_Strict):
    id: StrictInt
    type: Literal["row"]
    title: StrictStr
    collapsed: StrictBool
    gridPos: GridPos
    panels: list[Panel]


class Variable(_Strict):
    type: Literal["datasource", "constant", "query"]
    name: StrictStr = Field(pattern=r"^\w+$")
    query: StrictStr
    datasource: DataSourceRef | None = None


class Templating(_Strict):
    list: list[Variable]


class TimeRange(_Strict):
    from_: StrictStr = Field(alias="from")
    to: StrictStr


class DashboardModel(_Strict):
    uid: StrictStr = Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")
    title: StrictStr
    schemaVersion: StrictInt = Field(ge=39)
    time: TimeRange
    refresh: StrictStr
    templating: Templating
    panels: list[Row | Panel] = Field(min_length=1)


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_dashboard_matches_the_dashboard_model(name):
    DashboardModel.model_validate(BOARDS[name])


def test_the_dashboard_model_rejects_what_grafana_would():
    board = json.loads(json.dumps(BOARDS["operations"]))
    panel = _panels(board)[0]
    panel["gridPos"]["x"] = "0"  # a string where Grafana wants a number
    with pytest.raises(ValueError):
        DashboardModel.model_validate(board)
    panel["gridPos"]["x"] = 20  # 20 + 9 columns: off the grid
    with pytest.raises(ValueError):
        DashboardModel.model_validate(board)


def test_uids_and_panel_ids_are_unique_and_stable():
    assert {b["uid"] for b in BOARDS.values()} == set(dash.DASHBOARD_UIDS.values())
    for board in BOARDS.values():
        ids = [p["id"] for p in board["panels"]]
        assert ids == list(range(1, len(ids) + 1))


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_panel_has_a_datasource_and_a_target(name):
    for panel in _panels(BOARDS[name]):
        assert panel["datasource"]["uid"] in ("${prometheus}", "${redis}"), panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target.get("expr") or target.get("command") or target.get("query"), panel["title"]


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_panels_do_not_overlap(name):
    cells: dict[tuple[int, int], str] = {}
    for panel in BOARDS[name]["panels"]:
        g = panel["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r} at {(x, y)}"
                cells[(x, y)] = panel["title"]


def test_each_dashboard_has_a_datasource_variable_per_kind_it_queries():
    for board in BOARDS.values():
        kinds = {q.kind for q in dash.panel_queries(board)}
        ds_vars = {v["query"]: v for v in board["templating"]["list"] if v["type"] == "datasource"}
        plugins = {"prometheus": dash.PROMETHEUS_PLUGIN, "redis": dash.REDIS_PLUGIN}
        assert set(ds_vars) == {plugins[k] for k in kinds}
        for kind in kinds:
            # Defaults to the provisioned data source, so the dashboard works without a choice.
            assert ds_vars[plugins[kind]]["current"]["value"] == dash.DATASOURCE_UIDS[kind]


# -- what the queries name -----------------------------------------------------------------------


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
    """Every series the panels query is one the worker's StreamMetrics or Triton exports, and
    every worker metric has a panel."""
    from hfrisk.stream.worker.metrics import StreamMetrics

    families = list(StreamMetrics().registry.collect())
    # The series names each family exposes (labelled families have no samples until first use).
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    worker_samples = {f.name + suffix for f in families for suffix in suffixes[f.type]}
    queries = dash.panel_queries(BOARDS["operations"])
    assert {q.kind for q in queries} == {"prometheus"}
    named = {m for q in queries for m in re.findall(r"\b((?:hfrisk|nv)_\w+)", q.query)}
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


def test_provisioning_declares_both_datasources_from_environment_urls():
    files = dash.provisioning_files()
    datasources = yaml.safe_load(files["provisioning/datasources/hfrisk.yaml"])["datasources"]
    assert {d["uid"]: d["type"] for d in datasources} == {
        dash.DATASOURCE_UIDS["prometheus"]: "prometheus", dash.DATASOURCE_UIDS["redis"]: "redis-datasource",
    }
    assert all(re.fullmatch(r"\$\{[A-Z_]+\}", d["url"]) for d in datasources)
    provider = yaml.safe_load(files["provisioning/dashboards/hfrisk.yaml"])["providers"][0]
    assert provider["type"] == "file" and provider["folderUid"] == dash.FOLDER_UID


# -- push (a fake Grafana HTTP API on loopback) ---------------------------------------------------------


class _FakeGrafana(BaseHTTPRequestHandler):
    """The three endpoints push uses; folders and dashboards kept in memory, requests recorded."""

    folders: dict[str, str]
    dashboards: dict[str, dict]
    requests: list[tuple[str, str, dict | None, str]]

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> dict | None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.requests.append((self.command, self.path, body, self.headers.get("Authorization", "")))
        return body

    def do_GET(self):
        self._record()
        uid = self.path.removeprefix("/api/folders/")
        if uid in self.folders:
            self._reply(200, {"uid": uid, "title": self.folders[uid]})
        else:
            self._reply(404, {"message": "folder not found"})

    def do_POST(self):
        body = self._record()
        if self.path == "/api/folders":
            self.folders[body["uid"]] = body["title"]
            self._reply(200, {"uid": body["uid"], "title": body["title"]})
        elif self.path == "/api/dashboards/db":
            uid = body["dashboard"]["uid"]
            version = self.dashboards.get(uid, {}).get("version", 0) + 1
            self.dashboards[uid] = {"version": version, **body}
            self._reply(200, {"uid": uid, "url": f"/d/{uid}/x", "version": version, "status": "success"})
        else:
            self._reply(404, {"message": "not found"})

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def fake_grafana():
    handler = type("Handler", (_FakeGrafana,), {"folders": {}, "dashboards": {}, "requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_push_creates_the_folder_then_overwrites_both_dashboards(fake_grafana):
    url, grafana = fake_grafana
    answers = dash.push_dashboards(url, "service-token", "hfrisk")
    assert sorted(a["uid"] for a in answers) == sorted(dash.DASHBOARD_UIDS.values())
    calls = [(method, path) for method, path, _, _ in grafana.requests]
    assert calls == [("GET", "/api/folders/hfrisk"), ("POST", "/api/folders"),
                     ("POST", "/api/dashboards/db"), ("POST", "/api/dashboards/db")]
    assert all(auth == "Bearer service-token" for *_, auth in grafana.requests)
    for uid, stored in grafana.dashboards.items():
        assert stored["overwrite"] is True and stored["folderUid"] == "hfrisk"
        assert stored["dashboard"]["panels"] and "id" not in stored["dashboard"]
        assert stored["dashboard"] == {k: v for k, v in BOARDS[_name_of(uid)].items() if k != "id"}

    # A second push finds the folder and bumps each dashboard's version.
    grafana.requests.clear()
    answers = dash.push_dashboards(url, ("admin", "pw"), "hfrisk")
    assert [(m, p) for m, p, _, _ in grafana.requests][:1] == [("GET", "/api/folders/hfrisk")]
    assert ("POST", "/api/folders") not in [(m, p) for m, p, _, _ in grafana.requests]
    assert {a["version"] for a in answers} == {2}
    expected = "Basic " + base64.b64encode(b"admin:pw").decode()
    assert all(auth == expected for *_, auth in grafana.requests)


def test_push_command_needs_credentials(fake_grafana, monkeypatch):
    url, grafana = fake_grafana
    for var in ("GRAFANA_TOKEN", "GRAFANA_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    result = CliRunner().invoke(dash.app, ["push", "--url", url])
    assert result.exit_code == 2 and grafana.requests == []
    result = CliRunner().invoke(dash.app, ["push", "--url", url, "--folder", "Ward Boards"], env={"GRAFANA_TOKEN": "t"})
    assert result.exit_code == 0, result.output
    assert grafana.folders == {"ward-boards": "Ward Boards"}


def _name_of(uid: str) -> str:
    return next(name for name, u in dash.DASHBOARD_UIDS.items() if u == uid)
