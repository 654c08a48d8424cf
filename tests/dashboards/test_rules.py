"""The Prometheus rules of model monitoring, checked and evaluated by promtool (Debian's
``prometheus`` package ships it) on synthetic counters: the recorded refusal share and PSI against
values computed here from their definitions (PSI as the symmetrised Kullback-Leibler divergence,
scipy's ``entropy(p, q) + entropy(q, p)``), and which devices' alerts fire."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import yaml
from scipy.stats import entropy

from hfrisk import dashboards as dash
from hfrisk.core.config import MonitoringSettings
from hfrisk.stream.worker.monitoring import ScoreBins, bin_label
from tests.dashboards.test_files import ROOT
from tests.integration.service_required import service_unavailable
from tests.stream.test_monitoring import BUNDLED_SCALE

SETTINGS = MonitoringSettings()
BINS = ScoreBins.from_reference(BUNDLED_SCALE.reference)
REFERENCE = [float(q) for q in BINS.reference_share]
# Scored windows per minute in each bin: "shifted" piles up at the top (bin 00 stays empty,
# which the half count keeps finite); "new" starts 60 minutes in, uniform over the bins.
SHIFTED = [0, 0, 0, 1, 1, 2, 2, 4, 6, 10]
NEW = [5] * 10
MINUTES = 100


def _promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        service_unavailable("promtool (Debian package prometheus)")
    return binary


def psi(counts, reference) -> float:
    """PSI from its definition: smoothed shares p against the reference q, sum (p - q) ln(p / q)."""
    c = np.asarray(counts, dtype=np.float64)
    p = (c + dash.rules.PSI_PSEUDOCOUNT) / (c.sum() + dash.rules.PSI_PSEUDOCOUNT * len(c))
    return float(entropy(p, reference) + entropy(reference, p))


def _series(name: str, labels: dict, values: str) -> dict:
    body = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{body}}}", "values": values}


def _input_series() -> list[dict]:
    out = []
    windows = "hfrisk_device_windows_total"
    for device, refused, scored in (("bad", 6, 4), ("good", 1, 19), ("few", 1, 0)):
        out.append(_series(windows, {"device": device, "outcome": "low_quality"}, f"0+{refused}x{MINUTES}"))
        out.append(_series(windows, {"device": device, "outcome": "scored"}, f"0+{scored}x{MINUTES}"))
    # A worker restart at minute 41: its counter starts again from 0.
    out.append(_series(windows, {"device": "restart", "outcome": "scored"}, "0+10x40 0+10x58"))
    out.append(_series(windows, {"device": "restart", "outcome": "low_quality"}, f"0x{MINUTES}"))
    for i, share in enumerate(REFERENCE):
        for instance in ("w1", "w2"):  # every worker exports the card's shares: counted once
            out.append(_series("hfrisk_score_reference_share", {"bin": bin_label(i), "instance": instance},
                               f"{share!r}+0x{MINUTES}"))
    bins = "hfrisk_device_score_bins_total"
    for i, (shifted, new) in enumerate(zip(SHIFTED, NEW)):
        out.append(_series(bins, {"device": "shifted", "bin": bin_label(i)}, f"0+{shifted}x{MINUTES}"))
        out.append(_series(bins, {"device": "new", "bin": bin_label(i)}, f"_x60 0+{new}x{MINUTES - 60}"))
    return out


def _close(name: str, device: str, value: float) -> dict:
    """A check that ``name{device=...}`` is ``value`` (to 1e-9) at minute 90."""
    return {"expr": f'abs({name}{{device="{device}"}} - {value!r}) < bool 1e-9', "eval_time": "90m",
            "exp_samples": [{"labels": f'{{device="{device}"}}', "value": 1}]}


def test_the_committed_rules_pass_promtool_check():
    promtool = _promtool()
    done = subprocess.run([promtool, "check", "rules", str(ROOT / "dashboards" / dash.RULES_PATH)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 8 rules found" in done.stdout


def test_rules_record_shares_and_psi_and_alert_on_the_right_devices(tmp_path):
    promtool = _promtool()
    (tmp_path / "rules.yml").write_text(dash.rules_file(SETTINGS))
    n = dash.RULE_NAMES
    # Over the last hour at minute 90: 60 minutes of "shifted", the 30 minutes "new" has existed.
    psi_shifted, psi_new = psi(np.multiply(SHIFTED, 60), REFERENCE), psi(np.multiply(NEW, 30), REFERENCE)
    assert psi_shifted > SETTINGS.drift_alert_psi > psi_new
    refusal = SETTINGS.refusal_window
    tests = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": _input_series(),
            "promql_expr_test": [
                _close(n["psi"], "shifted", psi_shifted),
                _close(n["psi"], "new", psi_new),
                # The refusal share over 15 minutes: 6 of every 10 windows, 1 of 20, all of "few"'s.
                _close(n["refusal_share"], "bad", 0.6),
                _close(n["refusal_share"], "good", 0.05),
                _close(n["refusal_share"], "few", 1.0),
                # Counts over the window are whole windows: 15 minutes of 19 a minute...
                {"expr": f'{n["windows"]}{{device="good",outcome="scored"}}', "eval_time": "90m",
                 "exp_samples": [{"labels": f'{n["windows"]}{{device="good",outcome="scored"}}', "value": 285}]},
                # ... and after a restart at minute 41, what came since (9 minutes of 10).
                {"expr": f'{n["windows"]}{{device="restart",outcome="scored"}}', "eval_time": "50m",
                 "exp_samples": [{"labels": f'{n["windows"]}{{device="restart",outcome="scored"}}', "value": 90}]},
                {"expr": f'{n["scored"]}{{device="new"}}', "eval_time": "90m",
                 "exp_samples": [{"labels": f'{n["scored"]}{{device="new"}}', "value": 30 * sum(NEW)}]},
            ],
            "alert_rule_test": [
                {"eval_time": "20m", "alertname": "HfriskDeviceRefusals", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "device": "bad"},
                    "exp_annotations": {
                        "summary": "Device bad: the quality gate refuses 60% of its windows",
                        "description": f"More than {SETTINGS.refusal_alert_share:.0%} of the device's windows over "
                                       f"the last {refusal} were not fit to score (the operations dashboard shows "
                                       "the reasons): electrodes, cabling or the device itself.",
                    }}]},
                # Held for 10 minutes before firing: nothing at minute 8.
                {"eval_time": "8m", "alertname": "HfriskDeviceRefusals", "exp_alerts": []},
                {"eval_time": "90m", "alertname": "HfriskDeviceScoreDrift", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "device": "shifted"},
                    "exp_annotations": {
                        "summary": f"Device shifted: scores drifted from the reference cohort (PSI {psi_shifted:.2f})",
                        "description": "The population stability index of the device's scores over the last "
                                       f"{SETTINGS.drift_window} against the model card's reference cohort is above "
                                       f"{SETTINGS.drift_alert_psi}: a different population, a miscalibrated device "
                                       "or a changed signal path.",
                    }}]},
            ],
        }],
    }
    (tmp_path / "tests.yml").write_text(json.dumps(tests, indent=1))
    done = subprocess.run([promtool, "test", "rules", "tests.yml"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_rule_thresholds_and_windows_follow_the_settings():
    rules = yaml.safe_load(dash.rules_file(MonitoringSettings(drift_window="30m", drift_alert_psi=0.4,
                                                              refusal_min_windows=12, alert_for="3m")))
    by_name = {r.get("record") or r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert "offset 30m" in by_name[dash.RULE_NAMES["scored"]]["expr"]
    drift, refusals = by_name["HfriskDeviceScoreDrift"], by_name["HfriskDeviceRefusals"]
    assert "> 0.4 " in drift["expr"] and ">= 12" in refusals["expr"]
    assert drift["for"] == refusals["for"] == "3m"
    with pytest.raises(ValueError):
        MonitoringSettings(refusal_alert_share=1.5)
