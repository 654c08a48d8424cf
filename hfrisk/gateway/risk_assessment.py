"""Scored windows as FHIR R4 ``RiskAssessment`` resources, the form an EHR takes a score back in.

One scored window (a scores-topic record, or the Redis ``latest`` hash read back) becomes one
RiskAssessment (fhir.resources R4B, identical to R4 for this resource):

* ``subject``: ``Patient/<id>``, the id given (the gateway passes the id the hospital sent, not
  the pseudonym the worker stored), ``occurrenceDateTime``: the window's end (when the score
  describes the patient), ``identifier``: the window id;
* ``method``: the model's name with its version from the model card (``urn:hfrisk:model``);
* ``basis``: references to the source Observations (FHIR) or message ids (HL7), when known;
* ``prediction[0]``: outcome heart failure (SNOMED CT 84114007), ``relativeRisk`` the hazard
  ratio ``exp(log_risk)`` relative to the training cohort, the log-hazard in ``rationale`` and
  an extension. A probability and its horizon are given only when the card provides the
  baseline survival S0(horizon) (Breslow, for the same uncentred log-risk): its
  ``risk_scale.absolute_risk`` (``hfrisk.model.contract.risk_scale``), else
  ``training["absolute_risk"]`` with ``horizon_days`` and ``baseline_survival``:
  ``p = 1 - S0 ** exp(log_risk)`` with ``whenRange`` 0..horizon days. With a risk scale, the
  window's percentile in the reference cohort goes in an extension and the rationale too. A card
  without either gives relative risk only.

Windows not fit to score carry no score and make no RiskAssessment (:func:`risk_assessment`
returns ``None``).

Example::

    ra = risk_assessment({"patient_id": "p1", "window_id": "w", "window_end_us": 0, "scored": True,
                          "log_risk": 0.4, "model_version": "1"}, card=default_card(), subject_id="MRN1")
    ra.prediction[0].relativeRisk     # Decimal('1.49182...')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from fhir.resources.R4B.riskassessment import RiskAssessment

from hfrisk.model.contract.card import ModelCard

__all__ = ["risk_assessment", "absolute_risk", "MODEL_SYSTEM", "PSEUDONYM_SYSTEM", "LOG_HAZARD_EXTENSION",
           "PERCENTILE_EXTENSION", "HEART_FAILURE"]

MODEL_SYSTEM = "urn:hfrisk:model"
PSEUDONYM_SYSTEM = "urn:hfrisk:pseudonym"
LOG_HAZARD_EXTENSION = "urn:hfrisk:fhir:log-hazard"
PERCENTILE_EXTENSION = "urn:hfrisk:fhir:reference-percentile"
HEART_FAILURE = {"system": "http://snomed.info/sct", "code": "84114007", "display": "Heart failure"}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def absolute_risk(log_risk: float, card: ModelCard) -> tuple[float, float] | None:
    """``(probability of the event by the horizon, horizon in days)`` when the card provides the
    baseline survival at a horizon (its ``risk_scale.absolute_risk``, else
    ``training["absolute_risk"]``); ``None`` otherwise."""
    scale = getattr(card, "risk_scale", None)
    if scale is not None and getattr(scale, "absolute_risk", None) is not None:
        spec = {"horizon_days": scale.absolute_risk.horizon_days,
                "baseline_survival": scale.absolute_risk.baseline_survival}
    else:
        spec = (card.training or {}).get("absolute_risk") or {}
    horizon, s0 = spec.get("horizon_days"), spec.get("baseline_survival")
    if horizon is None or s0 is None:
        return None
    if not (0.0 < float(s0) <= 1.0) or not float(horizon) > 0:
        raise ValueError(f"card absolute_risk needs 0 < baseline_survival <= 1 and horizon_days > 0, got {spec}")
    return 1.0 - float(s0) ** math.exp(log_risk), float(horizon)


def _decimal(value: float, digits: int = 6) -> Decimal:
    return Decimal(f"{value:.{digits}g}")


def risk_assessment(
    score: Mapping[str, Any],
    *,
    card: ModelCard,
    subject_id: str | None = None,
    basis: Sequence[str] = (),
    status: str = "final",
    pseudonymous: bool = False,
) -> RiskAssessment | None:
    """The RiskAssessment of one scored window, or ``None`` for a window without a score.

    ``score`` holds the scores-topic fields (``patient_id``, ``window_id``, ``window_end_us``,
    ``log_risk``, ``scored`` or ``fit_to_score``, ``model_version``, ``device_id``).
    ``subject_id`` (default ``score["patient_id"]``) names the Patient; with ``pseudonymous`` the
    id is a keyed pseudonym, not an id the EHR knows: the subject is then only an identifier in
    the ``urn:hfrisk:pseudonym`` system (``hfrisk pseudonym map`` turns it back, where allowed).
    ``basis`` are references such as ``Observation/ecg-1``. The model version is the record's (what scored it), else the
    card's.
    """
    scored = score.get("scored", score.get("fit_to_score", False))
    log_risk = score.get("log_risk")
    if not scored or log_risk is None:
        return None
    log_risk = float(log_risk)
    if not math.isfinite(log_risk):
        raise ValueError(f"log_risk must be finite, got {log_risk}")
    version = str(score.get("model_version") or card.version)
    end = _EPOCH + timedelta(microseconds=int(score["window_end_us"]))
    prediction: dict[str, Any] = {
        "outcome": {"coding": [dict(HEART_FAILURE)], "text": "incident heart failure"},
        "relativeRisk": _decimal(math.exp(log_risk)),
        "rationale": (
            f"Cox log-hazard {log_risk:.4f} (hazard ratio {math.exp(log_risk):.3f} relative to the "
            "training cohort) from a 10-s 12-lead ECG window; research software, not a medical device"
        ),
        "extension": [{"url": LOG_HAZARD_EXTENSION, "valueDecimal": _decimal(log_risk, 8)}],
    }
    scale = getattr(card, "risk_scale", None)
    if scale is not None and getattr(scale, "reference", None) is not None:
        percentile = float(scale.percentile([log_risk])[0])
        prediction["extension"].append({"url": PERCENTILE_EXTENSION, "valueDecimal": _decimal(percentile, 4)})
        prediction["rationale"] += (f"; percentile {percentile:.1f} of the reference cohort "
                                    f"({scale.reference.cohort}, n={scale.reference.n})")
    absolute = absolute_risk(log_risk, card)
    if absolute is not None:
        probability, horizon_days = absolute
        prediction["probabilityDecimal"] = _decimal(probability)
        prediction["whenRange"] = {
            "low": {"value": 0, "unit": "d", "system": "http://unitsofmeasure.org", "code": "d"},
            "high": {"value": _decimal(horizon_days), "unit": "d", "system": "http://unitsofmeasure.org", "code": "d"},
        }
    resource: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "status": status,
        "identifier": [{"system": "urn:hfrisk:window", "value": str(score["window_id"])}],
        "subject": (
            {"identifier": {"system": PSEUDONYM_SYSTEM, "value": subject_id or score["patient_id"]}}
            if pseudonymous else {"reference": f"Patient/{subject_id or score['patient_id']}"}
        ),
        "occurrenceDateTime": end.isoformat(),
        "method": {
            "coding": [{"system": MODEL_SYSTEM, "code": card.name, "version": version,
                        "display": f"{card.name} {version}"}],
            "text": f"{card.name} version {version}",
        },
        "prediction": [prediction],
    }
    if basis:
        resource["basis"] = [{"reference": ref} for ref in basis]
    if score.get("device_id"):
        resource["note"] = [{"text": f"recorded by device {score['device_id']}"}]
    return RiskAssessment.model_validate(resource)
