"""The operations dashboard (Prometheus): throughput, consumer lag, latency, errors, alerts, Triton,
and model monitoring per device (quality-gate refusals, score drift: docs/monitoring.md)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, timeseries
from grafana_foundation_sdk.builders import dashboard as gdash
from grafana_foundation_sdk.models import common as mcommon
from grafana_foundation_sdk.models import dashboard as mdash

from hfrisk.dashboards.builders import (
    datasource_variable,
    grid,
    prom_query,
    quantiles_panel,
    rate,
    stat_panel,
    threshold_steps,
)
from hfrisk.core.config import MonitoringSettings
from hfrisk.dashboards.rules import RULE_NAMES
from hfrisk.dashboards.sources import DASHBOARD_UIDS, DATASOURCE_UIDS, PROMETHEUS, PROMETHEUS_JOBS, PROMETHEUS_PLUGIN

__all__ = ["operations_dashboard"]


def operations_dashboard(model_name: str, monitoring: MonitoringSettings | None = None) -> gdash.Dashboard:
    triton = 'model="${model}"'
    board = (
        gdash.Dashboard("hfrisk — operations")
        .uid(DASHBOARD_UIDS["operations"])
        .description("Throughput, lag, latency and errors of the stream workers and Triton (Prometheus).")
        .tags(["hfrisk", "operations"])
        .time("now-1h", "now").refresh("10s").timezone("browser")
        .with_variable(datasource_variable("prometheus", "Prometheus", PROMETHEUS_PLUGIN, DATASOURCE_UIDS["prometheus"]))
        .with_variable(gdash.ConstantVariable("model").value(model_name))
        .link(gdash.DashboardLink("Ward").type(mdash.DashboardLinkType.DASHBOARDS).tags(["hfrisk"])
              .include_vars(False).keep_time(True))
    )
    board = board.with_row(gdash.Row("Throughput").grid_pos(grid(0, 0, 24, 1)))
    board = board.with_panel(
        timeseries.Panel().title("Chunks by outcome").datasource(PROMETHEUS).grid_pos(grid(0, 1, 9, 8)).unit("cps")
        .description("ECG chunks consumed per second: accepted, duplicate (redelivered), late, dead-lettered.")
        .with_target(prom_query(rate("hfrisk_chunks_total", "outcome"), "{{outcome}}"))
    )
    board = board.with_panel(
        timeseries.Panel().title("Windows by outcome").datasource(PROMETHEUS).grid_pos(grid(9, 1, 9, 8)).unit("cps")
        .description("10-s windows per second: scored, low quality (not scored), skipped (never emitted), dead-lettered.")
        .with_target(prom_query(rate("hfrisk_windows_total", "outcome"), "{{outcome}}"))
    )
    board = board.with_panel(
        stat_panel("Patients active", grid(18, 1, 6, 4), datasource=PROMETHEUS)
        .with_target(prom_query("sum(hfrisk_patients_active)", instant=True))
        .thresholds(threshold_steps((None, "blue"))).no_value("0")
    )
    board = board.with_panel(
        stat_panel("Scrape targets up", grid(18, 5, 6, 4), datasource=PROMETHEUS)
        .description("Workers and Triton that Prometheus reaches.")
        .with_target(prom_query(f'sum by (job) (up{{job=~"{PROMETHEUS_JOBS["worker"]}|{PROMETHEUS_JOBS["triton"]}"}})',
                           "{{job}}", instant=True))
        .thresholds(threshold_steps((None, "red"), (1, "green"))).no_value("0")
    )
    board = board.with_panel(
        timeseries.Panel().title("Consumer lag by partition").datasource(PROMETHEUS).grid_pos(grid(0, 9, 12, 8))
        .description("Messages behind the end of each ecg.chunks partition (max over workers: after a rebalance "
                     "the previous owner may still report its last value).")
        .with_target(prom_query("max by (partition) (hfrisk_consumer_lag)", "partition {{partition}}")).unit("short")
    )
    board = board.with_panel(
        timeseries.Panel().title("Micro-batch size").datasource(PROMETHEUS).grid_pos(grid(12, 9, 12, 8)).unit("short")
        .description("Windows per Triton request from the workers: median, p95 and mean.")
        .with_target(prom_query("histogram_quantile(0.5, sum by (le) (rate(hfrisk_batch_size_bucket[$__rate_interval])))", "p50"))
        .with_target(prom_query("histogram_quantile(0.95, sum by (le) (rate(hfrisk_batch_size_bucket[$__rate_interval])))", "p95", "B"))
        .with_target(prom_query(f"{rate('hfrisk_batch_size_sum')} / {rate('hfrisk_batch_size_count')}", "mean", "C"))
    )

    board = board.with_row(gdash.Row("Latency").grid_pos(grid(0, 17, 24, 1)))
    board = board.with_panel(
        quantiles_panel("hfrisk_end_to_end_latency_seconds", "End-to-end latency (acquired → score in Redis)",
                   grid(0, 18, 12, 8), "s")
    )
    board = board.with_panel(
        quantiles_panel("hfrisk_triton_latency_seconds", "Triton round trip (from the workers)", grid(12, 18, 12, 8), "s")
    )

    board = board.with_row(gdash.Row("Errors and alerts").grid_pos(grid(0, 26, 24, 1)))
    board = board.with_panel(
        timeseries.Panel().title("Dead letters by reason").datasource(PROMETHEUS).grid_pos(grid(0, 27, 9, 8)).unit("cps")
        .description("Messages sent to ecg.dead-letter per second.")
        .with_target(prom_query(rate("hfrisk_dead_letters_total", "reason"), "{{reason}}"))
    )
    board = board.with_panel(
        stat_panel("Dead letters in range", grid(9, 27, 3, 8), datasource=PROMETHEUS)
        .with_target(prom_query("sum(increase(hfrisk_dead_letters_total[$__range]))", instant=True))
        .thresholds(threshold_steps((None, "green"), (1, "orange"))).decimals(0).no_value("0")
    )
    board = board.with_panel(
        timeseries.Panel().title("Alerts by kind").datasource(PROMETHEUS).grid_pos(grid(12, 27, 9, 8)).unit("short")
        .description("Flags raised and cleared per interval.")
        .with_target(prom_query("sum by (kind) (increase(hfrisk_alerts_total[$__rate_interval]))", "{{kind}}"))
        .draw_style(mcommon.GraphDrawStyle.BARS)
    )
    board = board.with_panel(
        stat_panel("Alerts in range", grid(21, 27, 3, 8), datasource=PROMETHEUS)
        .with_target(prom_query("sum by (kind) (increase(hfrisk_alerts_total[$__range]))", "{{kind}}", instant=True))
        .thresholds(threshold_steps((None, "blue"))).decimals(0).no_value("0")
    )

    board = board.with_row(gdash.Row("Triton").grid_pos(grid(0, 35, 24, 1)))
    board = board.with_panel(
        timeseries.Panel().title("Triton requests").datasource(PROMETHEUS).grid_pos(grid(0, 36, 8, 8)).unit("reqps")
        .with_target(prom_query(rate("nv_inference_request_success", selector=f"{{{triton}}}"), "success"))
        .with_target(prom_query(rate("nv_inference_request_failure", selector=f"{{{triton}}}"), "failure", "B"))
    )
    per_request = f"{rate('nv_inference_request_success', selector=f'{{{triton}}}')}"
    board = board.with_panel(
        timeseries.Panel().title("Triton time per request").datasource(PROMETHEUS).grid_pos(grid(8, 36, 8, 8)).unit("µs")
        .description("Mean microseconds per request spent queued, computing, and in total inside Triton.")
        .with_target(prom_query(f"{rate('nv_inference_queue_duration_us', selector=f'{{{triton}}}')} / {per_request}", "queue"))
        .with_target(prom_query(f"{rate('nv_inference_compute_infer_duration_us', selector=f'{{{triton}}}')} / {per_request}",
                           "compute", "B"))
        .with_target(prom_query(f"{rate('nv_inference_request_duration_us', selector=f'{{{triton}}}')} / {per_request}",
                           "total", "C"))
    )
    board = board.with_panel(
        timeseries.Panel().title("Triton batching").datasource(PROMETHEUS).grid_pos(grid(16, 36, 8, 8)).unit("short")
        .description("Inferences (windows) per model execution: how much the dynamic batcher merged.")
        .with_target(prom_query(f"{rate('nv_inference_count', selector=f'{{{triton}}}')} / "
                           f"{rate('nv_inference_exec_count', selector=f'{{{triton}}}')}", "windows per execution"))
    )
    return _monitoring_panels(board, monitoring or MonitoringSettings())


def _monitoring_panels(board: gdash.Dashboard, s: MonitoringSettings) -> gdash.Dashboard:
    """Per device: the share of windows the quality gate refused and why, and the drift of the
    scores from the model card's reference cohort (recording rules of hfrisk.dashboards.rules)."""
    n = RULE_NAMES
    board = board.with_row(gdash.Row("Model monitoring").grid_pos(grid(0, 44, 24, 1)))
    board = board.with_panel(
        timeseries.Panel().title("Windows refused by the quality gate, by device").datasource(PROMETHEUS)
        .grid_pos(grid(0, 45, 8, 8)).unit("percentunit").min(0).max(1)
        .description(f"Share of each device's windows not fit to score over the last {s.refusal_window}. "
                     f"Alert HfriskDeviceRefusals above {s.refusal_alert_share:.0%} (on at least "
                     f"{s.refusal_min_windows} windows, for {s.alert_for}). Devices beyond the first "
                     f"{s.max_devices} a worker sees are counted as 'other'.")
        .with_target(prom_query(n["refusal_share"], "{{device}}"))
        .thresholds(threshold_steps((None, "green"), (s.refusal_alert_share, "red")))
    )
    board = board.with_panel(
        timeseries.Panel().title("Refusal reasons by device").datasource(PROMETHEUS)
        .grid_pos(grid(8, 45, 8, 8)).unit("cps")
        .description("Refused windows per second by device and quality-gate reason (a window may give several).")
        .with_target(prom_query(rate("hfrisk_device_refusals_total", "device, reason"), "{{device}}: {{reason}}"))
    )
    board = board.with_panel(
        timeseries.Panel().title("Score drift by device (PSI against the reference cohort)").datasource(PROMETHEUS)
        .grid_pos(grid(16, 45, 8, 8)).unit("short").min(0)
        .description(f"Population stability index of each device's scores over the last {s.drift_window}, in "
                     f"{s.drift_bins} bins cut at the reference cohort's quantiles. Below 0.1: as the reference; "
                     f"above 0.25: a major shift. Alert HfriskDeviceScoreDrift above {s.drift_alert_psi} "
                     f"(on at least {s.drift_min_windows} scored windows, for {s.alert_for}).")
        .with_target(prom_query(n["psi"], "{{device}}"))
        .thresholds(threshold_steps((None, "green"), (0.1, "orange"), (s.drift_alert_psi, "red")))
    )
    board = board.with_panel(
        bargauge.Panel().title("Scores per reference bin, all devices (1 = as in the reference cohort)")
        .datasource(PROMETHEUS).grid_pos(grid(0, 53, 24, 6)).unit("short").min(0)
        .description(f"Share of the scores of the last {s.drift_window} in each bin (bin 00: below the reference "
                     "cohort's first quantile, the last: from its last) divided by the reference cohort's share in "
                     "that bin.")
        .orientation(mcommon.VizOrientation.VERTICAL)
        .with_target(prom_query(f"{n['fleet_share']} / on (bin) max by (bin) (hfrisk_score_reference_share)",
                                "bin {{bin}}", instant=True))
        .thresholds(threshold_steps((None, "blue"), (1.5, "orange"), (2.5, "red")))
    )
    return board
