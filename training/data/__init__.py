"""Training data: one loader per source (PTB-XL, cohort files), report texts, model inputs cached on disk,
ECG measurements, the MUSIC heart-failure cohort (real outcomes, no waveforms), the semi-synthetic cohorts
(diagnosis-label hazard, MUSIC's ECG hazard), lead-subset augmentation and event-stratified batches."""

from __future__ import annotations

from hfrisk.core.lazy import lazy_exports

# name -> module of this package that defines it, imported on first use:
# ``import hfrisk.training.data.ptbxl`` must not pay for torch.
_EXPORTS = {
    "PTBXL": "ptbxl",
    "SPLIT_FOLDS": "ptbxl",
    "SUPERCLASSES": "ptbxl",
    "read_ptbxl_database": "ptbxl",
    "read_scp_statements": "report_text",
    "statement_texts": "report_text",
    "clean_raw_report": "report_text",
    "Cohort": "cohort",
    "CohortError": "cohort",
    "load_cohort": "cohort",
    "cohort_from_ptbxl": "cohort",
    "PAPER_CV_SEEDS": "cohort",
    "ModelInputs": "dataset",
    "model_inputs": "dataset",
    "ptbxl_inputs": "dataset",
    "MEASUREMENTS": "measurements",
    "measure_ecg": "measurements",
    "measure_record": "measurements",
    "measure_records": "measurements",
    "HazardSpec": "synthetic_cohort",
    "SyntheticCohort": "synthetic_cohort",
    "synthetic_hf_cohort": "synthetic_cohort",
    "write_synthetic_cohort": "synthetic_cohort",
    "read_oracle": "synthetic_cohort",
    "oracle_method": "synthetic_cohort",
    "build_synthetic_cohort": "synthetic_cohort",
    "MusicError": "music",
    "load_music": "music",
    "ECG_COVARIATES": "music",
    "MusicHazard": "music_hazard",
    "ptbxl_music_covariates": "music_hazard",
    "music_ecg_cohort": "music_hazard",
    "LeadSubsetMasking": "augment",
    "EventStratifiedBatchSampler": "sampling",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
