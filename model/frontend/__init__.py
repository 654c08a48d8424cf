"""The signal front end: filters, R-peak detection, beats and the median beat, the quality gate, and
`prepare_windows`, which turns batches of ECG windows into model inputs on numpy, torch or CuPy (docs/frontend.md).
"""

from hfrisk.model.frontend.filters import (
    resample_ratio,
    resample,
    filter_leads,
    design_filters,
    lowpass,
)
from hfrisk.model.frontend.beats import (
    detect_r_peaks,
    reference_lead,
    extract_beats,
    BeatSelection,
    select_beats,
    median_beat,
)
from hfrisk.model.frontend.detection import heart_rate_bpm
from hfrisk.model.frontend.arrays import ArrayBackend
from hfrisk.model.frontend.quality import (
    QualityReason,
    BLOCKING_REASONS,
    LeadFlags,
    flag_leads,
    QualityReport,
    assess,
)
from hfrisk.model.frontend.preprocessing import (
    ModelInput,
    prepare,
    prepare_many,
    prepare_windows,
    select_window,
    zscore_leads,
    pad_beat,
    cleaned_beat,
)

__all__ = [
    "resample_ratio",
    "resample",
    "filter_leads",
    "design_filters",
    "lowpass",
    "detect_r_peaks",
    "reference_lead",
    "extract_beats",
    "BeatSelection",
    "select_beats",
    "median_beat",
    "heart_rate_bpm",
    "QualityReason",
    "BLOCKING_REASONS",
    "LeadFlags",
    "flag_leads",
    "QualityReport",
    "assess",
    "ModelInput",
    "prepare",
    "prepare_many",
    "prepare_windows",
    "ArrayBackend",
    "select_window",
    "zscore_leads",
    "pad_beat",
    "cleaned_beat",
]
