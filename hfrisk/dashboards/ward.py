"""The ward dashboard (Redis): patients by risk, flags, alert events, one patient's score, trend,
attention and signal quality.

What the Redis plugin can and cannot do shapes the panels:

* its ``zrange`` command returns one *wide* row (a field per member, its score as the value), so
  tables re-shape it with Grafana's ``reduce`` (series to rows) transformation;
* it interpolates variables in ``keyName``/``field``/``query`` but **not** in ``min``/``max``, so
  a trend cannot follow the time picker: it shows the newest :data:`TREND_POINTS` windows
  (an hour at the default 5-s hop);
* ``xrevrange`` with no start/end reads the stream entries inside the dashboard's time range.

Every key read is one of ``docs/redis-keys.md``, built from the sink's key schema; the key prefix
is the hidden constant variable ``prefix``.
"""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import bargauge, table, timeseries
from grafana_foundation_sdk.builders import common as gcommon
from grafana_foundation_sdk.builders import dashboard as gdash
from grafana_foundation_sdk.models import common as mcommon
from grafana_foundation_sdk.models import dashboard as mdash

from hfrisk.core.config import StreamSettings
from hfrisk.dashboards.builders import (
    datasource_variable,
    display_name,
    grid,
    stat_panel,
    threshold_steps,
    thresholds_override,
    transform,
    zset_json_rows,
    zset_rows,
)
from hfrisk.dashboards.queries import RedisQuery
from hfrisk.dashboards.sources import DASHBOARD_UIDS, DATASOURCE_UIDS, QUALITY_RECORDS, REDIS, REDIS_PLUGIN, TREND_POINTS
from hfrisk.stream.sinks.keys import key_pattern

__all__ = ["ward_dashboard"]


def _key(name: str, patient: str = "${patient}") -> str:
    """A key of docs/redis-keys.md in Grafana's terms: the ``prefix`` constant and a patient variable."""
    return key_pattern(name, prefix="${prefix}", patient_id=patient)


def _named(name: str) -> str:
    """A key as panel descriptions name it for people (``hfrisk:latest:<patient>``)."""
    return key_pattern(name, prefix="hfrisk", patient_id="<patient>")


def ward_dashboard(stream: StreamSettings, key_prefix: str, min_quality: float, leads: Sequence[str]) -> gdash.Dashboard:
    """The ward board; thresholds from ``stream``, the quality line at ``min_quality``."""
    risk_steps = threshold_steps((None, "green"), (stream.clear_threshold, "orange"), (stream.risk_threshold, "red"))
    quality_steps = threshold_steps((None, "red"), (min_quality, "green"))
    # The percentile and the absolute risk are coloured by the flag rule's own values, whatever the
    # rule in force: a reader sees where a patient stands against "top 5 %" and "10 % in 5 years".
    percentile_steps = threshold_steps((None, "green"), (stream.clear_percentile, "orange"), (stream.flag_percentile, "red"))
    absolute_steps = threshold_steps((None, "green"), (stream.clear_absolute_risk, "orange"),
                                     (stream.flag_absolute_risk, "red"))
    patient_var = (
        gdash.QueryVariable("patient").label("Patient").datasource(REDIS)
        # Riskiest first, so the default selection is the patient most worth a look.
        .query(f"ZREVRANGE {_key('ranking')} 0 -1")
        .refresh(mdash.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(mdash.VariableSort.DISABLED)
    )
    patients_var = (
        gdash.QueryVariable("patients").label("Signal quality of").datasource(REDIS)
        .query(f"ZRANGE {_key('patients')} 0 -1")
        .refresh(mdash.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(mdash.VariableSort.ALPHABETICAL_ASC)
        .multi(True).include_all(True)
        .current(mdash.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )
    # A field data link (title/url), not a dashboard link: clicking a patient selects them below.
    open_patient = {"title": "Open this patient", "targetBlank": False,
                    "url": f"/d/{DASHBOARD_UIDS['ward']}/?var-patient=${{__value.raw}}&${{__url_time_range}}"}
    board = (
        gdash.Dashboard("hfrisk — ward")
        .uid(DASHBOARD_UIDS["ward"])
        .description("Heart-failure risk of every monitored patient, from the stream workers' Redis keys "
                     "(docs/redis-keys.md). Research software, not a medical device.")
        .tags(["hfrisk", "ward"])
        .time("now-6h", "now").refresh("10s").timezone("browser")
        .with_variable(datasource_variable("redis", "Redis", REDIS_PLUGIN, DATASOURCE_UIDS["redis"]))
        .with_variable(gdash.ConstantVariable("prefix").value(key_prefix))
        .with_variable(patient_var)
        .with_variable(patients_var)
        .link(gdash.DashboardLink("Operations").type(mdash.DashboardLinkType.DASHBOARDS).tags(["hfrisk"])
              .include_vars(False).keep_time(True))
    )

    board = board.with_row(gdash.Row("Ward").grid_pos(grid(0, 0, 24, 1)))
    board = board.with_panel(
        table.Panel().title("Patients by current risk").datasource(REDIS).grid_pos(grid(0, 1, 12, 11))
        .description("Latest log-hazard of each patient's newest scored window, riskiest first. "
                     f"Orange from {stream.clear_threshold:g} (clear threshold), red from {stream.risk_threshold:g}.")
        .with_target(RedisQuery(command="zrange", key=_key("ranking"), min="0", max="-1"))
        .transformations(zset_rows("patient", "log-risk"))
        .thresholds(risk_steps).decimals(2)
        .override_by_name("log-risk", [
            mdash.DynamicConfigValue(id_val="custom.cellOptions",
                                     value={"type": "color-background", "mode": "basic"}),
        ])
        .override_by_name("patient", [mdash.DynamicConfigValue(id_val="links", value=[open_patient])])
    )
    board = board.with_panel(
        stat_panel("Flagged now", grid(12, 1, 6, 5), datasource=REDIS)
        .description(f"Patients whose alert is raised ({_named('flagged')}).")
        .with_target(RedisQuery(command="zrange", key=_key("flagged"), min="0", max="-1"))
        .transformations(zset_rows("patient", "flagged since"))
        .reduce_options(gcommon.ReduceDataOptions().values(False).calcs(["count"]).fields("/^flagged since$/"))
        .thresholds(threshold_steps((None, "green"), (1, "red"))).no_value("0")
    )
    board = board.with_panel(
        stat_panel("Patients online", grid(18, 1, 6, 5), datasource=REDIS)
        .description(f"Patients with at least one window ({_named('patients')}).")
        .with_target(RedisQuery(command="zrange", key=_key("patients"), min="0", max="-1"))
        .transformations(zset_rows("patient", "last seen"))
        .reduce_options(gcommon.ReduceDataOptions().values(False).calcs(["count"]).fields("/^last seen$/"))
        .thresholds(threshold_steps((None, "blue"))).no_value("0")
    )
    board = board.with_panel(
        table.Panel().title("Flagged patients").datasource(REDIS).grid_pos(grid(12, 6, 12, 6))
        .description("Each flagged patient and the start of the window that raised the flag.")
        .with_target(RedisQuery(command="zrange", key=_key("flagged"), min="0", max="-1"))
        .transformations(zset_rows("patient", "flagged since", score_is_time=True, sort_desc=False))
        .override_by_name("patient", [mdash.DynamicConfigValue(id_val="links", value=[open_patient])])
    )
    board = board.with_panel(
        table.Panel().title("Alert events").datasource(REDIS).grid_pos(grid(0, 12, 14, 8))
        .description(f"Raised and cleared flags in the time range, newest first (the {_named('alerts')} stream).")
        .with_target(RedisQuery(command="xrevrange", key=_key("alerts"), count=200))
        .transformations([transform("organize", {
            "excludeByName": {"event_id": True, "window_start_us": True, "$streamId": True},
            "indexByName": {"at": 0, "kind": 1, "patient_id": 2, "log_risk": 3, "threshold": 4, "windows": 5,
                            "window_id": 6},
        })])
    )
    board = board.with_panel(
        bargauge.Panel().title("Why windows were not scored").datasource(REDIS).grid_pos(grid(14, 12, 10, 8))
        .description("Windows refused by the quality gate, by reason code, since the counters began "
                     f"({_named('quality_reasons')}).")
        .with_target(RedisQuery(command="hgetall", key=_key("quality_reasons")))
        .orientation(mcommon.VizOrientation.HORIZONTAL).display_mode(mcommon.BarGaugeDisplayMode.BASIC)
        .reduce_options(gcommon.ReduceDataOptions().values(False).calcs(["lastNotNull"]))
        .thresholds(threshold_steps((None, "orange"))).min(0).unit("none")
    )

    board = board.with_row(gdash.Row("Patient ${patient}").grid_pos(grid(0, 20, 24, 1)))
    board = board.with_panel(
        stat_panel("Current risk", grid(0, 21, 8, 6), datasource=REDIS)
        .description("Newest scored window: log-hazard (higher = riskier), hazard ratio = exp(log-hazard), "
                     "percentile in the model card's reference cohort, absolute risk of heart failure within the "
                     "card's horizon (days; Breslow baseline; docs/score-scale.md), heart rate and signal quality "
                     f"({_named('latest')}). The flag rule in force: {stream.flag_on}.")
        .with_target(RedisQuery(command="hgetall", key=_key("latest")))
        .reduce_options(gcommon.ReduceDataOptions().values(False).calcs(["lastNotNull"])
                        .fields("/^(log_risk|hazard_ratio|risk_percentile|absolute_risk|absolute_risk_horizon_days|"
                                "heart_rate_bpm|quality_score)$/"))
        .decimals(2).thresholds(risk_steps)
        .override_by_name("hazard_ratio", [display_name("hazard ratio"), thresholds_override(threshold_steps((None, "text")))])
        .override_by_name("heart_rate_bpm", [display_name("heart rate"), mdash.DynamicConfigValue(id_val="unit", value="bpm"),
                                             thresholds_override(threshold_steps((None, "text")))])
        .override_by_name("quality_score", [display_name("quality"), thresholds_override(quality_steps)])
        .override_by_name("log_risk", [display_name("log-risk")])
        .override_by_name("risk_percentile", [display_name("percentile"), thresholds_override(percentile_steps),
                                              mdash.DynamicConfigValue(id_val="decimals", value=1)])
        .override_by_name("absolute_risk", [display_name("absolute risk"), thresholds_override(absolute_steps),
                                            mdash.DynamicConfigValue(id_val="unit", value="percentunit"),
                                            mdash.DynamicConfigValue(id_val="decimals", value=1)])
        .override_by_name("absolute_risk_horizon_days", [display_name("within (days)"),
                                                         thresholds_override(threshold_steps((None, "text"))),
                                                         mdash.DynamicConfigValue(id_val="decimals", value=0)])
    )
    board = board.with_panel(
        stat_panel("Alert state", grid(8, 21, 4, 6), datasource=REDIS)
        .description(f"Whether the patient is flagged now ({_named('alert')}).")
        .with_target(RedisQuery(command="hget", key=_key("alert"), field="flagged"))
        .mappings([
            mdash.ValueMap(options={"1": mdash.ValueMappingResult(text="FLAGGED", color="red"),
                                    "0": mdash.ValueMappingResult(text="not flagged", color="green")}),
        ])
        .thresholds(threshold_steps((None, "green"), (1, "red"))).no_value("no alert state")
    )
    board = board.with_panel(
        table.Panel().title("Patient").datasource(REDIS).grid_pos(grid(12, 21, 12, 6))
        .description(f"Bed, device, newest window seen and its quality ({_named('patient')}).")
        .with_target(RedisQuery(command="hgetall", key=_key("patient")))
        .transformations([transform("organize", {
            "excludeByName": {"last_window_start_us": True, "last_seen_us": True},
            "indexByName": {"patient_id": 0, "bed": 1, "device_id": 2, "last_seen": 3, "last_quality_score": 4,
                            "last_fit_to_score": 5, "last_window_id": 6},
        })])
    )
    board = board.with_panel(
        timeseries.Panel().title("Risk trend").datasource(REDIS).grid_pos(grid(0, 27, 16, 10))
        .description(f"Log-hazard of the newest {TREND_POINTS} scored windows ({_named('trend')}); "
                     "dashed lines: the clear and raise thresholds.")
        .with_target(RedisQuery(command="zrange", key=_key("trend"), min=f"-{TREND_POINTS}", max="-1"))
        .transformations([
            transform("reduce", {"mode": "seriesToRows", "reducers": ["lastNotNull"], "includeTimeField": False}),
            # Members are "<window_id>:<log_risk>" (the id holds no colon): split at the last colon.
            transform("extractFields", {"source": "Field", "format": "regexp",
                                         "regExp": "/^(?<window_id>.*):(?<log_risk>[^:]+)$/"}),
            transform("convertFieldType", {"conversions": [
                {"targetField": "Last *", "destinationType": "time"},
                {"targetField": "log_risk", "destinationType": "number"},
            ]}),
            transform("organize", {"excludeByName": {"Field": True, "window_id": True},
                                    "renameByName": {"Last *": "window start", "log_risk": "log-risk"}}),
            transform("sortBy", {"sort": [{"field": "window start", "desc": False}]}),
        ])
        .thresholds(risk_steps).thresholds_style(gcommon.GraphThresholdsStyleConfig().mode(mcommon.GraphThresholdsStyleMode.DASHED))
        .show_points(mcommon.VisibilityMode.AUTO).decimals(2)
    )
    board = board.with_panel(
        bargauge.Panel().title("Lead attention").datasource(REDIS).grid_pos(grid(16, 27, 8, 10))
        .description(f"How much each of the {len(leads)} leads weighed in the newest score (weights sum to 1), "
                     "in the model card's lead order.")
        .with_target(RedisQuery(command="hget", key=_key("latest"), field="lead_attention"))
        .transformations([transform("extractFields", {"source": "lead_attention", "format": "json", "replace": True})])
        .orientation(mcommon.VizOrientation.HORIZONTAL).display_mode(mcommon.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(gcommon.ReduceDataOptions().values(False).calcs(["lastNotNull"]))
        .min(0).unit("percentunit").thresholds(threshold_steps((None, "blue")))
        .color_scheme(gdash.FieldColor().mode(mdash.FieldColorModeId.CONTINUOUS_BLUES))
    )
    board = board.with_panel(
        bargauge.Panel().title("Where in the beat the network looked").datasource(REDIS).grid_pos(grid(0, 37, 24, 6))
        .description("Temporal attention of the newest score over the median beat's encoder steps, averaged over leads.")
        .with_target(RedisQuery(command="hget", key=_key("latest"), field="temporal_attention"))
        .transformations([transform("extractFields", {"source": "temporal_attention", "format": "json", "replace": True})])
        .orientation(mcommon.VizOrientation.VERTICAL).display_mode(mcommon.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(gcommon.ReduceDataOptions().values(False).calcs(["lastNotNull"]))
        .min(0).unit("percentunit").thresholds(threshold_steps((None, "purple")))
    )

    board = board.with_row(gdash.Row("Signal quality").grid_pos(grid(0, 43, 24, 1)))
    board = board.with_panel(
        table.Panel().title("Low-quality windows").datasource(REDIS).grid_pos(grid(0, 44, 12, 8))
        .description(f"The patient's newest {QUALITY_RECORDS} windows not fit to score, with the quality gate's reasons.")
        .with_target(RedisQuery(command="zrange", key=_key("quality"), min=f"-{QUALITY_RECORDS}", max="-1"))
        .transformations(zset_json_rows("window start"))
    )
    board = board.with_panel(
        table.Panel().title("Data gaps").datasource(REDIS).grid_pos(grid(12, 44, 12, 8))
        .description("Windows never emitted: lost chunks, time gaps, rate or lead changes, device resets.")
        .with_target(RedisQuery(command="zrange", key=_key("gaps"), min=f"-{QUALITY_RECORDS}", max="-1"))
        .transformations(zset_json_rows("first window start"))
    )
    board = board.with_panel(
        stat_panel("Quality ${patients}", grid(0, 52, 4, 4), datasource=REDIS)
        .description("Quality score of each patient's newest window (fit to score from "
                     f"{min_quality:g}); one panel per patient chosen in 'Signal quality of'.")
        .with_target(RedisQuery(command="hget", key=_key("patient", "${patients}"), field="last_quality_score"))
        .repeat("patients").repeat_direction("h").max_per_row(6)
        .decimals(2).min(0).max(1).thresholds(quality_steps)
    )
    return board
