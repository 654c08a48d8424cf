"""The model card: the single declaration of what goes into the model and what comes out.

Training writes it next to every checkpoint and exported model, Triton serves it beside the
model, and preprocessing (streaming, screening, training alike) is driven by it. Nothing else in
the code base may hard-code lead order, sampling rate, window or input length.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hfrisk.model.contract.risk_scale import RiskScale

__all__ = [
    "CANONICAL_LEADS",
    "InputSpec",
    "WindowSpec",
    "FilterSpec",
    "QualitySpec",
    "OutputSpec",
    "ServingSpec",
    "ModelCard",
    "default_card",
    "load_card",
    "CARD_FILENAME",
]

CARD_FILENAME = "model_card.json"
CANONICAL_LEADS: tuple[str, ...] = (
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InputSpec(_Frozen):
    """The tensor the network takes: ``(batch, len(leads), length_samples)`` float32."""

    name: str = "ecg"
    kind: Literal["median_beat"] = "median_beat"
    leads: tuple[str, ...] = CANONICAL_LEADS
    fs_hz: float = 500.0
    # A median beat of beat_samples, placed in the middle of length_samples with zero padding.
    length_samples: int = 608
    beat_samples: int = 600
    # Samples of the beat before the R peak (0.4 s pre, 0.8 s post at 500 Hz).
    r_peak_index: int = 200
    # The lead whose R peak sits at r_peak_index; when it is missing or unusable the usable lead
    # with the tallest positive deflection stands in (preprocessing).
    r_peak_lead: str = "II"
    padding: Literal["symmetric_zero"] = "symmetric_zero"
    units: Literal["mV"] = "mV"
    normalisation: Literal["per_lead_zscore"] = "per_lead_zscore"
    dtype: Literal["float32"] = "float32"
    # Leads that are absent from the source (and cannot be derived) are all-zero after
    # normalisation; the mask says which leads are real. Training masks leads the same way.
    missing_lead_fill: Literal["zero"] = "zero"

    @property
    def shape(self) -> tuple[int, int, int]:
        return (-1, len(self.leads), self.length_samples)

    @model_validator(mode="after")
    def _check(self) -> "InputSpec":
        if self.beat_samples > self.length_samples:
            raise ValueError("beat_samples cannot exceed length_samples")
        if not 0 < self.r_peak_index < self.beat_samples:
            raise ValueError("r_peak_index must fall inside the beat")
        if len(set(self.leads)) != len(self.leads):
            raise ValueError("duplicate lead names")
        return self


class WindowSpec(_Frozen):
    """The stretch of raw signal one model input is made from."""

    window_s: float = 10.0
    # Shorter records are refused; 10-s windows are the norm, screening of 8-s strips still works.
    min_duration_s: float = 8.0
    # Below this rate QRS morphology is not recoverable; PTB-XL's 100 Hz release is the floor.
    min_fs_hz: float = 100.0
    max_fs_hz: float = 10_000.0


class FilterSpec(_Frozen):
    """Baseline-wander and powerline removal applied before beat extraction."""

    highpass_hz: float = 0.5
    lowpass_hz: float = 100.0
    # Both mains frequencies are notched: feeds come from 50 Hz and 60 Hz countries.
    powerline_hz: tuple[float, ...] = (50.0, 60.0)


class QualitySpec(_Frozen):
    """Thresholds of the signal-quality index that decides whether a window may be scored."""

    min_beats: int = 4
    # Per window_s: 4 and 50 beats in 10 s bound the rate to ~25-300 bpm.
    max_beats: int = 50
    flat_std_mv: float = 0.01
    saturation_fraction: float = 0.05
    lead_off_amplitude_mv: float = 15.0
    min_template_correlation: float = 0.6
    # A window needs at least this many usable leads, including both of I and II or their derivation.
    min_usable_leads: int = 6
    required_leads: tuple[str, ...] = ("I", "II")
    # Span (mV) of the 1-s moving average above which a lead is reported for baseline wander
    # (reported only: the high-pass removes it). On PTB-XL records 1-500 the largest span among
    # records not annotated baseline_drift is 3.07 mV, 99th percentile 2.24 mV.
    baseline_wander_mv: float = 3.0
    # Leads masked as noisy before a window whose beats disagree is refused as noisy: one or two
    # bad electrodes (muscle noise, motion under V1-V2) are common and the rest still carry the
    # median beat; noise in more leads is the patient or the recording, not an electrode.
    max_noisy_leads: int = 2
    min_score: float = 0.5


class OutputSpec(_Frozen):
    name: str
    shape: tuple[int, ...]
    dtype: Literal["float32"] = "float32"
    description: str


def _default_outputs() -> tuple[OutputSpec, ...]:
    return (
        OutputSpec(
            name="log_risk",
            shape=(-1, 1),
            description="Cox log-hazard of incident heart failure relative to the training cohort; "
            "higher = riskier. exp(log_risk) is a hazard ratio, not a probability.",
        ),
        OutputSpec(
            name="lead_attention",
            shape=(-1, 12),
            description="Per-lead weight: cross-lead attention received by each lead "
            "(12x12 map averaged over heads and query leads); sums to 1.",
        ),
        OutputSpec(
            name="lead_attention_map",
            shape=(-1, 12, 12),
            description="Cross-lead attention map (query lead x key lead), averaged over heads; rows sum to 1.",
        ),
        OutputSpec(
            name="temporal_attention",
            shape=(-1, 12, 19),
            description="Per-lead temporal weights over the 19 encoder time steps (each ~32 ms of the "
            "608-sample input), averaged over heads and queries; each row sums to 1.",
        ),
    )


class ServingSpec(_Frozen):
    """Where this model's preprocessing may run (docs/serving.md).

    ``"worker"``: the stream worker prepares model inputs and the model takes them (the default,
    for CPU hosts). ``"server"``: the worker may send raw windows to ``raw_model``, which runs the
    front end where the network runs (``HFRISK_STREAM__PREPROCESS_ON=server``).
    """

    preprocess_on: tuple[Literal["worker", "server"], ...] = ("worker",)
    raw_model: str | None = None

    @model_validator(mode="after")
    def _raw_model_for_server(self) -> "ServingSpec":
        if "server" in self.preprocess_on and not self.raw_model:
            raise ValueError("server-side preprocessing needs the raw model's name")
        return self


class ModelCard(_Frozen):
    schema_version: Literal["hfrisk-model-card/1"] = "hfrisk-model-card/1"
    name: str = "hfrisk-dual-attention"
    version: str = "0"
    description: str = (
        "LLM-informed ECG dual-attention network (Chen et al., IEEE Trans. Big Data 2025) "
        "scoring 12-lead median beats for heart-failure risk."
    )
    input: InputSpec = Field(default_factory=InputSpec)
    window: WindowSpec = Field(default_factory=WindowSpec)
    filters: FilterSpec = Field(default_factory=FilterSpec)
    quality: QualitySpec = Field(default_factory=QualitySpec)
    outputs: tuple[OutputSpec, ...] = Field(default_factory=_default_outputs)
    risk_sign: Literal["higher_is_riskier"] = "higher_is_riskier"
    # What a log-risk means: its percentile in a reference cohort and an absolute risk at a horizon
    # (hfrisk.model.contract.risk_scale). None: the model gives relative risk only.
    risk_scale: RiskScale | None = None
    # Where preprocessing may run; hfrisk export declares both when it writes the raw-window model.
    serving: ServingSpec = Field(default_factory=ServingSpec)
    training: dict = Field(default_factory=dict)
    intended_use: str = (
        "Research and engineering demonstration. Not a validated clinical device; "
        "scores must not be used for diagnosis or treatment decisions."
    )

    @model_validator(mode="after")
    def _one_baseline(self) -> "ModelCard":
        # training["absolute_risk"] is the form the FHIR RiskAssessment builder reads
        # (hfrisk.gateway.risk_assessment); when both are present they must be the same baseline.
        mirror = (self.training or {}).get("absolute_risk")
        if mirror and self.risk_scale is not None:
            spec = self.risk_scale.absolute_risk
            if (float(mirror.get("horizon_days", math.nan)) != spec.horizon_days
                    or float(mirror.get("baseline_survival", math.nan)) != spec.baseline_survival):
                raise ValueError(f"training.absolute_risk {mirror} differs from risk_scale.absolute_risk")
        return self

    def output(self, name: str) -> OutputSpec:
        for spec in self.outputs:
            if spec.name == name:
                return spec
        raise KeyError(f"model card declares no output {name!r}")

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        if path.is_dir():
            path = path / CARD_FILENAME
        path.write_text(self.to_json() + "\n")
        return path


def default_card() -> ModelCard:
    return ModelCard()


def load_card(path: str | Path) -> ModelCard:
    """Read a card from a JSON file, or from ``model_card.json`` inside a directory."""
    path = Path(path)
    if path.is_dir():
        path = path / CARD_FILENAME
    return ModelCard.model_validate(json.loads(path.read_text()))
