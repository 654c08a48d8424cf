"""Evaluation of risk models: the paper's cross-validation protocol, the Cox baseline on ECG measurements and
the linear probe of an encoder, Cox models on the real MUSIC cohort, the power of paired C comparisons, paired differences, frozen-feature floors (the metrics themselves are :mod:`hfrisk.training.metrics`)."""

from __future__ import annotations

from hfrisk.core.lazy import lazy_exports

# name -> module of this package that defines it, imported on first use:
# lifelines, scikit-survival and torch load only when a name is used.
_EXPORTS = {
    "Split": "protocol",
    "ProtocolResult": "protocol",
    "cross_validate": "protocol",
    "evaluate_fixed_split": "protocol",
    "paper_splits": "protocol",
    "CoxBaseline": "cox_baseline",
    "CoxBaselineConfig": "cox_baseline",
    "cox_method": "cox_baseline",
    "ProbeResult": "probe",
    "fit_probe": "probe",
    "MusicEvaluation": "music_cox",
    "evaluate_music": "music_cox",
    "music_cox_coefficients": "music_cox",
    "write_music_cox": "music_cox",
    "probe_checkpoint": "probe",
    "runs_needed": "power",
    "events_needed": "power",
    "harrell_c_se": "power",
    "paired_t_power": "power",
    "paired_difference": "comparison",
    "principal_components_method": "floors",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
