"""Model monitoring in the worker: bounded device labels, score bins at the reference cohort's
quantiles (checked against a normal reference whose deciles are known, a saturated model's tie
and the bundled model's reference), and the per-device counts a batch leaves in the metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from hfrisk.core.config import MonitoringSettings, Settings
from hfrisk.model.contract.card import load_card
from hfrisk.model.contract.risk_scale import DEFAULT_PERCENTILE_GRID, ReferenceDistribution
from hfrisk.stream.sinks import WindowResult
from hfrisk.stream.worker.metrics import StreamMetrics
from hfrisk.stream.worker.monitoring import DeviceLabels, ModelMonitor, ScoreBins, bin_label

ROOT = Path(__file__).resolve().parents[2]
BUNDLED_SCALE = load_card(ROOT / "triton_models" / "hfrisk").risk_scale


def normal_reference(n: int = 1_000_000) -> ReferenceDistribution:
    """A reference cohort drawn from N(0, 1) as export stores it: Hazen quantiles on the card's grid."""
    sample = stats.norm.ppf((np.arange(n) + 0.5) / n)  # n equally likely points: exact quantiles
    q = np.percentile(sample, DEFAULT_PERCENTILE_GRID, method="hazen")
    return ReferenceDistribution(cohort="N(0,1)", n=n, percentiles=DEFAULT_PERCENTILE_GRID, log_risk=tuple(q))


def test_bins_of_a_normal_reference_are_its_deciles_with_a_tenth_each():
    bins = ScoreBins.from_reference(normal_reference())
    assert bins.n_bins == 10
    np.testing.assert_allclose(bins.edges, stats.norm.ppf(np.arange(1, 10) / 10), atol=1e-5)
    np.testing.assert_allclose(bins.reference_share, 0.1, atol=1e-6)
    # A value on an edge goes to the bin above; beyond the ends, the end bins.
    assert bins.bin_of([-50.0, bins.edges[0], np.nextafter(bins.edges[0], -np.inf), 0.0, 50.0]).tolist() == [
        0, 1, 0, 5, 9]


def test_a_tie_in_the_reference_is_one_bin_holding_the_ties_share():
    # A saturated model (as the bundled one was until it was retrained): 251 of 1,997 reference
    # records share the maximum log-risk (12.6 %, from the 87.4th percentile up), so the 90th
    # percentile is the tie's value: the top bin holds the whole tie, not a tenth, and the bin
    # below it what is left above 80 %.
    n, tied, top = 1997, 251, 1.4758
    sample = np.r_[np.linspace(-3.0, 1.2, n - tied), np.full(tied, top)]
    q = np.percentile(sample, DEFAULT_PERCENTILE_GRID, method="hazen")
    reference = ReferenceDistribution(cohort="saturated", n=n, percentiles=DEFAULT_PERCENTILE_GRID, log_risk=tuple(q))
    bins = ScoreBins.from_reference(reference)
    assert bins.n_bins == 10 and bins.edges[-1] == top
    assert bins.reference_share.sum() == pytest.approx(1.0, abs=1e-12)
    # The card's grid is 0.5 percentile points: the tie's share is known to that resolution.
    assert bins.reference_share[-1] == pytest.approx(tied / n, abs=0.005)
    # The bin below the tie holds what is left between the 80th percentile and the tie.
    assert bins.reference_share[-2] == pytest.approx(1 - tied / n - 0.8, abs=0.005)
    np.testing.assert_allclose(bins.reference_share[:-2], 0.1, atol=1e-9)
    # A saturated score lands in the tie's bin.
    assert int(bins.bin_of(top)) == 9


def test_the_bundled_models_reference_gives_ten_bins_of_a_tenth():
    # Retrained with a head that cannot saturate (triton_models/hfrisk/MODEL.md): no tie, deciles.
    bins = ScoreBins.from_reference(BUNDLED_SCALE.reference)
    assert bins.n_bins == 10
    np.testing.assert_allclose(bins.reference_share, 0.1, atol=1e-9)
    assert np.all(np.diff(bins.edges) > 0)


def test_a_tie_at_the_bottom_leaves_no_bin_the_reference_never_fills():
    q = np.r_[np.zeros(31), np.linspace(0.1, 1.0, 70)]  # 30 % of the cohort at 0
    ref = ReferenceDistribution(cohort="toy", n=100, percentiles=tuple(np.linspace(0, 100, 101)), log_risk=tuple(q))
    bins = ScoreBins.from_reference(ref)
    # Deciles 1-3 fall in the tie: the edge there has nothing below it and goes, so the bottom
    # bin runs up to the 4th decile and holds 40 %; deciles 4-9 remain: 7 bins.
    assert bins.n_bins == 7 and bins.edges[0] == pytest.approx(q[40])
    np.testing.assert_allclose(bins.reference_share, [0.4] + [0.1] * 6, atol=1e-12)


def test_device_labels_are_bounded_named_first_then_first_come_then_other():
    labels = DeviceLabels(named=["icu-gw"], max_devices=2)
    seen = [labels(d) for d in ("a", "b", "c", "a", "icu-gw", "", "d", "b")]
    assert seen == ["a", "b", "other", "a", "icu-gw", "unknown", "other", "b"]
    assert labels.labelled == {"a", "b"}


def test_monitoring_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("HFRISK_MONITORING__MAX_DEVICES", "7")
    monkeypatch.setenv("HFRISK_MONITORING__DEVICES", '["ward-3-gw"]')
    monkeypatch.setenv("HFRISK_MONITORING__DRIFT_ALERT_PSI", "0.4")
    settings = Settings().monitoring
    assert (settings.max_devices, settings.devices, settings.drift_alert_psi) == (7, ["ward-3-gw"], 0.4)


def _result(device: str, log_risk: float | None, reasons: tuple[str, ...] = ()) -> WindowResult:
    return WindowResult(patient_id="p", window_id="w", window_start_us=0, window_end_us=10, fit_to_score=log_risk is not None,
                        quality_score=0.5, quality_reasons=reasons, log_risk=log_risk, device_id=device)


def test_the_monitor_counts_outcomes_reasons_and_score_bins_per_device():
    metrics = StreamMetrics()
    monitor = ModelMonitor(metrics, risk_scale=BUNDLED_SCALE, settings=MonitoringSettings(max_devices=1))
    bins = monitor.bins
    scores = [-3.0, 0.0, 1.0, max(BUNDLED_SCALE.reference.log_risk)]
    for s in scores:
        monitor.observe(_result("monitor-1", s))
    monitor.observe(_result("monitor-1", None, ("noisy", "too_few_beats")))
    monitor.observe(_result("monitor-2", None, ("flat_line", "too_few_leads")))  # over max_devices: "other"
    value = metrics.value
    assert value("hfrisk_device_windows_total", device="monitor-1", outcome="scored") == 4
    assert value("hfrisk_device_windows_total", device="monitor-1", outcome="low_quality") == 1
    assert value("hfrisk_device_windows_total", device="other", outcome="low_quality") == 1
    assert value("hfrisk_device_refusals_total", device="monitor-1", reason="too_few_beats") == 1
    assert value("hfrisk_device_refusals_total", device="other", reason="flat_line") == 1
    # Each score in the bin whose edges enclose it, counted by hand from the edges.
    by_hand = [int(np.sum(bins.edges <= s)) for s in scores]
    counts = [value("hfrisk_device_score_bins_total", device="monitor-1", bin=bin_label(i)) for i in range(bins.n_bins)]
    assert counts == [by_hand.count(i) for i in range(bins.n_bins)]
    # Empty bins exist at zero for a device seen, and the reference shares are exported.
    assert metrics.registry.get_sample_value("hfrisk_device_score_bins_total",
                                             {"device": "other", "bin": "00"}) == 0.0
    shares = [value("hfrisk_score_reference_share", bin=bin_label(i)) for i in range(bins.n_bins)]
    np.testing.assert_allclose(shares, bins.reference_share)


def test_without_a_risk_scale_refusals_are_counted_and_scores_not_binned():
    metrics = StreamMetrics()
    monitor = ModelMonitor(metrics)
    monitor.observe(_result("m", 0.3))
    monitor.observe(_result("m", None, ("noisy",)))
    assert metrics.value("hfrisk_device_windows_total", device="m", outcome="scored") == 1
    assert metrics.value("hfrisk_device_refusals_total", device="m", reason="noisy") == 1
    assert not [s for f in metrics.registry.collect() for s in f.samples
                if s.name.startswith(("hfrisk_device_score_bins", "hfrisk_score_reference_share"))]
