r"""Model monitoring per device: what the quality gate refuses, and where the scores fall against
the model card's reference cohort (docs/monitoring.md).

The worker only *counts*; Prometheus turns the counts into the refusal share and the drift
statistic with recording rules (:mod:`hfrisk.dashboards.rules`), because a device's windows may be
scored by several workers (its patients sit on different partitions, a partition moves after a
rebalance) and counters add up across workers and survive restarts, where a per-worker sliding
window of scores would not.

* :class:`DeviceLabels` bounds the ``device`` label: the devices named in the settings, then the
  first ``max_devices`` others a worker sees, then ``other`` (``unknown`` for an empty id).
* :class:`ScoreBins` cuts the log-risk axis at the reference cohort's quantiles (deciles by
  default) and gives each bin its share of the reference cohort. A tie in the reference (the
  bundled model's saturated top: 12.6 % of the cohort share the maximum) merges the quantiles it
  spans into one edge, and its bin gets the tie's whole share, not 1/n_bins.
* :class:`ModelMonitor` counts each first-written window into the metrics.

The population stability index over a device's recent scores, with :math:`p_i` the smoothed
share of its scores in bin :math:`i` and :math:`q_i` the reference share:

.. math:: \mathrm{PSI} = \sum_i (p_i - q_i) \ln(p_i / q_i), \qquad
          p_i = \frac{c_i + \tfrac12}{\sum_j c_j + \tfrac12 B}

(:math:`c_i` scores in bin :math:`i` of :math:`B`; the half count keeps an empty bin finite.)

Example:
    >>> from hfrisk.model.contract.risk_scale import ReferenceDistribution
    >>> ref = ReferenceDistribution(cohort="toy", n=5, percentiles=(0.0, 50.0, 100.0), log_risk=(-1.0, 0.0, 1.0))
    >>> bins = ScoreBins.from_reference(ref, n_bins=4)
    >>> bins.edges.tolist(), bins.reference_share.tolist()
    ([-0.5, 0.0, 0.5], [0.25, 0.25, 0.25, 0.25])
    >>> bins.bin_of([-2.0, 0.0, 0.7]).tolist()
    [0, 2, 3]
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from hfrisk.core.config import MonitoringSettings
from hfrisk.core.logs import get_logger
from hfrisk.model.contract.risk_scale import ReferenceDistribution, RiskScale
from hfrisk.stream.sinks import WindowResult
from hfrisk.stream.worker.metrics import StreamMetrics

__all__ = ["DeviceLabels", "ScoreBins", "ModelMonitor", "OTHER_DEVICES", "UNKNOWN_DEVICE", "bin_label"]

log = get_logger(__name__)

OTHER_DEVICES = "other"
UNKNOWN_DEVICE = "unknown"


def bin_label(index: int) -> str:
    """Zero-padded, so that bins sort in order wherever labels are sorted as text."""
    return f"{index:02d}"


class DeviceLabels:
    """The ``device`` label value of a device id, from a bounded set (see the module docstring).

    First come, first served rather than the N busiest: a device's label never changes while
    the worker runs, so its counters stay one continuous series.
    """

    def __init__(self, named: Iterable[str] = (), max_devices: int = 50):
        self.named = frozenset(named)
        self.max_devices = max_devices
        self._seen: set[str] = set()
        self._overflowed = False

    def __call__(self, device_id: str) -> str:
        if not device_id:
            return UNKNOWN_DEVICE
        if device_id in self.named or device_id in self._seen:
            return device_id
        if len(self._seen) < self.max_devices:
            self._seen.add(device_id)
            return device_id
        if not self._overflowed:
            # Once: the operator should know that per-device panels no longer show every device.
            self._overflowed = True
            log.warning("more devices than monitoring labels; later ones are counted as 'other'",
                        max_devices=self.max_devices, first_other=device_id)
        return OTHER_DEVICES

    @property
    def labelled(self) -> frozenset[str]:
        """Devices labelled by their own id beyond the named ones, so far."""
        return frozenset(self._seen)


def _percentile_reaching(percentiles: np.ndarray, quantiles: np.ndarray, value: float) -> float:
    """The least percentile at which the (piecewise-linear) quantile function reaches ``value``:
    the reference's share strictly below ``value``, in percent (a tie's first percentile)."""
    i = int(np.searchsorted(quantiles, value, side="left"))
    if i == 0:
        return float(percentiles[0])
    if i == len(quantiles):
        return float(percentiles[-1])
    if quantiles[i] == value:
        return float(percentiles[i])
    lo, hi = quantiles[i - 1], quantiles[i]
    return float(percentiles[i - 1] + (value - lo) / (hi - lo) * (percentiles[i] - percentiles[i - 1]))


@dataclass(frozen=True)
class ScoreBins:
    """Bins of the log-risk axis: bin ``i`` is ``[edges[i-1], edges[i])`` (open at both ends of
    the axis); ``reference_share[i]`` is the reference cohort's share in it (sums to 1)."""

    edges: np.ndarray
    reference_share: np.ndarray

    @classmethod
    def from_reference(cls, reference: ReferenceDistribution, n_bins: int = 10) -> ScoreBins:
        p = np.asarray(reference.percentiles, dtype=np.float64)
        q = np.asarray(reference.log_risk, dtype=np.float64)
        cuts = np.unique(np.interp(np.arange(1, n_bins) * 100.0 / n_bins, p, q))
        below = np.array([_percentile_reaching(p, q, float(c)) for c in cuts])
        # An edge with nothing of the reference below it (a tie at the bottom) would make a bin
        # the reference never fills: PSI would be infinite for any score there.
        keep = below > 0.0
        cuts, below = cuts[keep], below[keep]
        share = np.diff(np.concatenate([[0.0], below, [100.0]])) / 100.0
        return cls(edges=cuts, reference_share=share)

    @property
    def n_bins(self) -> int:
        return len(self.reference_share)

    def bin_of(self, log_risk) -> np.ndarray:
        """The bin index of each log-risk (a value on an edge belongs to the bin above it)."""
        return np.searchsorted(self.edges, np.asarray(log_risk, dtype=np.float64), side="right")


class ModelMonitor:
    """Counts windows per device into ``metrics``: outcome, refusal reasons, score bin.

    Call :meth:`observe` once per window, on its first write (a redelivered window was counted
    when it was first written). Without a risk scale in the card there is no reference, so
    scores are not binned (refusals are still counted).
    """

    def __init__(self, metrics: StreamMetrics, *, risk_scale: RiskScale | None = None,
                 settings: MonitoringSettings | None = None):
        settings = settings or MonitoringSettings()
        self.metrics = metrics
        self.labels = DeviceLabels(settings.devices, settings.max_devices)
        self.bins = None if risk_scale is None else ScoreBins.from_reference(risk_scale.reference, settings.drift_bins)
        self._bin_labels: tuple[str, ...] = ()
        self._devices: set[str] = set()
        if self.bins is not None:
            self._bin_labels = tuple(bin_label(i) for i in range(self.bins.n_bins))
            # bisect on a list is bin_of for one value at a tenth of numpy's per-call cost.
            self._edges = [float(e) for e in self.bins.edges]
            for label, share in zip(self._bin_labels, self.bins.reference_share):
                metrics.score_reference_share.labels(bin=label).set(float(share))
            log.info("model monitoring: score bins at the reference cohort's quantiles",
                     cohort=risk_scale.reference.cohort, edges=[round(float(e), 4) for e in self.bins.edges],
                     reference_share=[round(float(q), 4) for q in self.bins.reference_share],
                     max_devices=settings.max_devices)
        else:
            log.warning("model monitoring: the model card has no risk scale, so scores are not compared "
                        "with a reference cohort (refusals are still counted)")

    def observe(self, result: WindowResult) -> None:
        device = self.labels(result.device_id)
        m = self.metrics
        if device not in self._devices:
            # Every outcome and bin at zero from the device's first window: shares and PSI see
            # its empty bins, and the panels show 0 rather than nothing.
            self._devices.add(device)
            for outcome in ("scored", "low_quality"):
                m.device_windows.labels(device=device, outcome=outcome)
            for label in self._bin_labels:
                m.device_score_bins.labels(device=device, bin=label)
        if result.scored:
            m.device_windows.labels(device=device, outcome="scored").inc()
            if self.bins is not None:
                index = bisect_right(self._edges, result.log_risk)
                m.device_score_bins.labels(device=device, bin=self._bin_labels[index]).inc()
            return
        m.device_windows.labels(device=device, outcome="low_quality").inc()
        for reason in result.quality_reasons:
            m.device_refusals.labels(device=device, reason=reason).inc()
