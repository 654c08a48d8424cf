"""Small builders the two dashboards share: grid positions, thresholds, transformations, PromQL."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.builders import dashboard as gdash
from grafana_foundation_sdk.builders import prometheus as gprom
from grafana_foundation_sdk.models import common as mcommon
from grafana_foundation_sdk.models import dashboard as mdash

from hfrisk.dashboards.sources import PROMETHEUS

__all__ = [
    "grid", "threshold_steps", "transform", "zset_rows", "zset_json_rows", "prom_query", "rate", "quantiles_panel",
    "stat_panel", "display_name", "thresholds_override", "datasource_variable",
]

_QUANTILES = (0.5, 0.95, 0.99)


def grid(x: int, y: int, w: int, h: int) -> mdash.GridPos:
    return mdash.GridPos(x=x, y=y, w=w, h=h)


def threshold_steps(*steps: tuple[float | None, str]) -> gdash.ThresholdsConfig:
    return (
        gdash.ThresholdsConfig()
        .mode(mdash.ThresholdsMode.ABSOLUTE)
        .steps([mdash.Threshold(value=value, color=color) for value, color in steps])
    )


def transform(transform_id: str, options: Mapping[str, Any]) -> mdash.DataTransformerConfig:
    return mdash.DataTransformerConfig(id_val=transform_id, options=dict(options))


def zset_rows(member: str, score: str, *, score_is_time: bool = False, sort_desc: bool = True) -> list:
    """Transformations turning the plugin's one-row ZRANGE frame into a row per member."""
    steps = [
        transform("reduce", {"mode": "seriesToRows", "reducers": ["lastNotNull"], "includeTimeField": False}),
        transform("organize", {"renameByName": {"Field": member, "Last *": score}}),
    ]
    if score_is_time:
        steps.append(transform("convertFieldType", {"conversions": [{"targetField": score, "destinationType": "time"}]}))
    steps.append(transform("sortBy", {"sort": [{"field": score, "desc": sort_desc}]}))
    return steps


def prom_query(expr: str, legend: str = "", ref_id: str = "A", *, instant: bool = False) -> gprom.Dataquery:
    query = gprom.Dataquery().expr(expr).ref_id(ref_id).datasource(PROMETHEUS)
    query = query.instant() if instant else query.range()
    return query.legend_format(legend) if legend else query


def rate(metric: str, by: str = "", selector: str = "") -> str:
    grouping = f" by ({by}) " if by else ""
    return f"sum{grouping}(rate({metric}{selector}[$__rate_interval]))"


def quantiles_panel(histogram: str, title: str, pos: mdash.GridPos, unit: str) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).datasource(PROMETHEUS).grid_pos(pos).unit(unit)
    for i, q in enumerate(_QUANTILES):
        expr = f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket[$__rate_interval])))"
        panel = panel.with_target(prom_query(expr, f"p{round(q * 100)}", "ABC"[i]))
    return panel


def stat_panel(title: str, pos: mdash.GridPos, *, datasource: mdash.DataSourceRef) -> stat.Panel:
    return (
        stat.Panel().title(title).datasource(datasource).grid_pos(pos)
        .graph_mode(mcommon.BigValueGraphMode.NONE).color_mode(mcommon.BigValueColorMode.BACKGROUND)
    )


def zset_json_rows(time_name: str) -> list:
    """A ZRANGE of JSON members scored by time as a table: one row per record, its fields as columns."""
    return [
        transform("reduce", {"mode": "seriesToRows", "reducers": ["lastNotNull"], "includeTimeField": False}),
        transform("extractFields", {"source": "Field", "format": "json"}),
        transform("convertFieldType", {"conversions": [{"targetField": "Last *", "destinationType": "time"}]}),
        transform("organize", {"excludeByName": {"Field": True}, "renameByName": {"Last *": time_name}}),
        transform("sortBy", {"sort": [{"field": time_name, "desc": True}]}),
    ]


def display_name(name: str) -> mdash.DynamicConfigValue:
    return mdash.DynamicConfigValue(id_val="displayName", value=name)


def thresholds_override(steps: gdash.ThresholdsConfig) -> mdash.DynamicConfigValue:
    return mdash.DynamicConfigValue(id_val="thresholds", value=steps.build())


def datasource_variable(name: str, label: str, plugin: str, default_uid: str) -> gdash.DatasourceVariable:
    return (
        gdash.DatasourceVariable(name).label(label).type(plugin)
        .current(mdash.VariableOption(selected=True, text=default_uid, value=default_uid))
    )
