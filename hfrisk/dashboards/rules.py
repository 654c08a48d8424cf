"""Prometheus recording and alert rules of model monitoring (docs/monitoring.md).

From the worker's per-device counters (:mod:`hfrisk.stream.worker.metrics`) they record, per
``device``:

* ``hfrisk:device_windows`` (by ``outcome``) and ``hfrisk:device_refusal_share``: windows and the
  share the quality gate refused over ``refusal_window``;
* ``hfrisk:device_scored_windows``, ``hfrisk:device_score_share`` (by ``bin``) and
  ``hfrisk:device_score_psi``: scored windows, their smoothed share per reference bin and the
  population stability index against the reference cohort over ``drift_window``
  (the formula: :mod:`hfrisk.stream.worker.monitoring`); ``hfrisk:score_share``: all devices'
  share per bin, for the distribution panel;

and alert (``HfriskDeviceRefusals``, ``HfriskDeviceScoreDrift``) when a device's refusal share or
PSI stays above its threshold for ``alert_for`` on enough windows. Thresholds and windows come from
:class:`MonitoringSettings`; the committed file (``dashboards/prometheus/hfrisk-rules.yml``) uses its
defaults, the local stack's Prometheus the environment's.

A sliding window over counters is ``c - c offset W``; a series younger than ``W`` has no value
``W`` ago and counts from its start (it starts at 0 in the worker), and after a worker restart
(``c`` fell) only what came since. Unlike ``increase()`` this counts a new device's first windows
and does not extrapolate, so shares are shares of whole windows.
"""

from __future__ import annotations

import json

from hfrisk.core.config import MonitoringSettings

__all__ = ["RULE_NAMES", "ALERT_NAMES", "PSI_PSEUDOCOUNT", "prometheus_rules", "rules_file"]

# Half a window added to every bin's count: an empty bin gives a finite PSI (the Jeffreys prior).
PSI_PSEUDOCOUNT = 0.5

RULE_NAMES = {
    "windows": "hfrisk:device_windows",
    "refusal_share": "hfrisk:device_refusal_share",
    "scored": "hfrisk:device_scored_windows",
    "score_share": "hfrisk:device_score_share",
    "psi": "hfrisk:device_score_psi",
    "fleet_share": "hfrisk:score_share",
}
ALERT_NAMES = ("HfriskDeviceRefusals", "HfriskDeviceScoreDrift")


def _windowed(metric: str, window: str) -> str:
    return f"(({metric} - {metric} offset {window}) >= 0 or {metric})"


def prometheus_rules(settings: MonitoringSettings | None = None) -> dict:
    """The rule file as a mapping (``groups``: recording rules, then alerts)."""
    s = settings or MonitoringSettings()
    n = RULE_NAMES
    windows = f"sum by (device, outcome) ({_windowed('hfrisk_device_windows_total', s.refusal_window)})"
    bins = f"sum by (device, bin) ({_windowed('hfrisk_device_score_bins_total', s.drift_window)})"
    reference = "max by (bin) (hfrisk_score_reference_share)"
    k = PSI_PSEUDOCOUNT
    recording = [
        {"record": n["windows"], "expr": windows},
        {"record": n["refusal_share"],
         "expr": f'sum by (device) ({n["windows"]}{{outcome="low_quality"}}) / (sum by (device) ({n["windows"]}) > 0)'},
        {"record": n["scored"], "expr": f"sum by (device) ({bins})"},
        {"record": n["score_share"],
         "expr": f"({bins} + {k}) / on (device) group_left () "
                 f"((sum by (device) ({bins}) + {k} * count by (device) ({bins})) > {k} * count by (device) ({bins}))"},
        {"record": n["psi"],
         "expr": f"sum by (device) (({n['score_share']} - on (bin) group_left () {reference}) "
                 f"* ln({n['score_share']} / on (bin) group_left () {reference}))"},
        {"record": n["fleet_share"],
         "expr": f"sum by (bin) ({bins}) / on () group_left () (sum({bins}) > 0)"},
    ]
    alerts = [
        {"alert": "HfriskDeviceRefusals",
         "expr": f"{n['refusal_share']} > {s.refusal_alert_share} "
                 f"and on (device) sum by (device) ({n['windows']}) >= {s.refusal_min_windows}",
         "for": s.alert_for,
         "labels": {"severity": "warning"},
         "annotations": {
             "summary": "Device {{ $labels.device }}: the quality gate refuses "
                        "{{ $value | humanizePercentage }} of its windows",
             "description": f"More than {s.refusal_alert_share:.0%} of the device's windows over the last "
                            f"{s.refusal_window} were not fit to score (the operations dashboard shows the reasons): "
                            "electrodes, cabling or the device itself.",
         }},
        {"alert": "HfriskDeviceScoreDrift",
         "expr": f"{n['psi']} > {s.drift_alert_psi} "
                 f"and on (device) {n['scored']} >= {s.drift_min_windows}",
         "for": s.alert_for,
         "labels": {"severity": "warning"},
         "annotations": {
             "summary": "Device {{ $labels.device }}: scores drifted from the reference cohort "
                        "(PSI {{ $value | printf \"%.2f\" }})",
             "description": f"The population stability index of the device's scores over the last {s.drift_window} "
                            f"against the model card's reference cohort is above {s.drift_alert_psi}: a different "
                            "population, a miscalibrated device or a changed signal path.",
         }},
    ]
    return {"groups": [
        {"name": "hfrisk-monitoring", "rules": recording},
        {"name": "hfrisk-monitoring-alerts", "rules": alerts},
    ]}


def rules_file(settings: MonitoringSettings | None = None) -> str:
    """The rule file's text: JSON, which is YAML, so no YAML library is needed."""
    return ("# Generated by hfrisk.dashboards.rules (hfrisk dashboards write): do not edit.\n"
            + json.dumps(prometheus_rules(settings), indent=2) + "\n")
