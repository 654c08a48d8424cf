"""The generated dashboards are valid against Grafana's schema (as grafana-foundation-sdk models it)
and a strict model of the subset hfrisk uses; layout and data sources are consistent."""

from __future__ import annotations

import json
from typing import Any, Literal

import pytest
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

from hfrisk import dashboards as dash
from tests.dashboards.boards import BOARDS
from tests.dashboards.boards import panels as _panels


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
