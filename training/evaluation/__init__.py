"""Evaluation of risk models: the paper's cross-validation protocol, the Cox baseline on ECG measurements and
the linear probe of an encoder (the metrics themselves are :mod:`hfrisk.training.metrics`)."""

from __future__ import annotations

import importlib
from typing import Any

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
    "probe_checkpoint": "probe",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
