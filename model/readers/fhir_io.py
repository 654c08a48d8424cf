"""FHIR R4 ECG Observations (``component.valueSampledData``) in and out of the canonical :class:`ECG`.

One Observation is one recording; each component with a ``valueSampledData`` is one lead, named
by its ``code``. An Observation without such components but with its own ``valueSampledData`` is
a single-lead recording whose ``Observation.code`` names the lead. Parsing and validation are ``fhir.resources``' R4B models: R4B changed nothing in
Observation or SampledData from R4 (R5 did: ``interval``, ``codeMap``), and fhir.resources 8 keeps
R4B, not R4, beside its R5 default.

Per lead (FHIR R4 SampledData):

* value = ``origin.value + factor * data[k]`` in the unit of ``origin`` (UCUM ``code``, else
  ``unit``: ``mV``, ``uV``, ``V``), then mV; ``factor`` defaults to 1;
* ``period`` is milliseconds between samples: ``fs_hz = 1000 / period`` (snapped to a whole Hz
  within a millionth, as 2.77777777778 ms is 360 Hz); every lead must share it and its sample count;
* ``data`` is space-separated decimals; ``E`` (error, no value) makes the recording
  ``NON_FINITE``; ``L``/``U`` (below ``lowerLimit``/above ``upperLimit``) become that limit (the
  amplifier saturated: the quality gate judges it);
* ``dimensions`` must be 1: an interleaved multi-dimension component names no lead per dimension;
* the lead is the first of ``code.coding`` that names one: MDC by number (``131329``) or
  reference id (``MDC_ECG_ELEC_POTL_I``, ``MDC_ECG_LEAD_AVR``) in ``code`` or ``display``, else
  a display or ``code.text`` that :func:`~hfrisk.model.contract.leads.normalise_lead_name` knows
  (``Lead II``, ``aVF``). Components without ``valueSampledData`` (heart rate, QT) are skipped
  and listed in ``metadata["other_components"]``.

Ids: ``patient_id`` is ``subject.reference``'s id (``Patient/123`` -> ``123``), else
``subject.identifier.value``; ``device_id`` is ``device.reference``'s id, else its identifier or
display; ``acquired_at`` is ``effectiveDateTime``/``effectiveInstant``/``effectivePeriod.start``.

Example::

    obs = ecg_to_observation(read_wfdb("tests/data/ecg/ptbxl/records500/00000/00001_hr"))
    ecg = read_fhir(obs.model_dump_json())   # the same 12 leads, within resolution/2
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation
from pydantic import ValidationError

from hfrisk.model.contract.ecg import ECG, UNIT_SCALE_TO_MV, to_millivolts
from hfrisk.model.contract.errors import ECGInputError, InputErrorReason
from hfrisk.model.contract.leads import normalise_lead_name
from hfrisk.model.readers.mdc_codes import MDC_SYSTEM, mdc_code, mdc_lead, mdc_refid

__all__ = [
    "read_fhir",
    "fhir_observations",
    "observation_to_ecg",
    "ecg_to_observation",
    "observation_patient_id",
    "FHIR_EXTENSIONS",
    "ECG_OBSERVATION_CODE",
]

FHIR_EXTENSIONS = frozenset({".fhir", ".json"})

# The Observation code writers here use: MDC's "ECG electric potential", as in FHIR's ECG example.
ECG_OBSERVATION_CODE = {"system": MDC_SYSTEM, "code": "131328", "display": "MDC_ECG_ELEC_POTL"}

_UCUM = "http://unitsofmeasure.org"


def _bad(what: str) -> ECGInputError:
    return ECGInputError(InputErrorReason.BAD_MESSAGE, what)


def _load_json(source: str | bytes | Path | Mapping[str, Any]) -> dict:
    if isinstance(source, Mapping):
        return dict(source)
    if isinstance(source, Path):
        try:
            source = source.read_bytes()
        except OSError as exc:
            raise ECGInputError(InputErrorReason.UNREADABLE, f"{source}: {exc}") from exc
    try:
        data = json.loads(source)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _bad(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise _bad(f"a FHIR resource is a JSON object, got {type(data).__name__}")
    return data


def _validation_detail(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    return f"{where}: {first.get('msg', '')} ({exc.error_count()} error(s))"


def fhir_observations(source: str | bytes | Path | Mapping[str, Any]) -> Iterator[Observation]:
    """The Observations in a resource: the Observation itself, or each one in a Bundle.

    Raises ``ECGInputError(BAD_MESSAGE)`` for JSON that is not an R4 Observation or Bundle (the
    pydantic error says which field), or a Bundle without Observations.
    """
    data = _load_json(source)
    kind = data.get("resourceType")
    try:
        if kind == "Observation":
            yield Observation.model_validate(data)
            return
        if kind == "Bundle":
            bundle = Bundle.model_validate(data)
        else:
            raise _bad(f"resourceType {kind!r}: expected an Observation or a Bundle of them")
    except ValidationError as exc:
        raise _bad(f"invalid FHIR R4 {kind}: {_validation_detail(exc)}") from exc
    observations = [
        entry.resource for entry in bundle.entry or []
        if entry.resource is not None and entry.resource.get_resource_type() == "Observation"
    ]
    if not observations:
        raise _bad("the Bundle holds no Observation")
    yield from observations


def _lead_of(code) -> str | None:
    """The canonical lead a component's CodeableConcept names, else None."""
    candidates: list[str] = []
    for coding in code.coding or []:
        for text in (coding.code, coding.display):
            if text:
                lead = mdc_lead(text)
                if lead is not None:
                    return lead
                candidates.append(str(text))
    if code.text:
        candidates.append(code.text)
    for text in candidates:
        try:
            name, inverted = normalise_lead_name(text)
        except ECGInputError:
            continue
        if name is not None and not inverted:
            return name
    return None


def _describe(code) -> str:
    codings = [f"{c.code or ''}|{c.display or ''}" for c in code.coding or []]
    return f"{codings} text={code.text!r}"


def _units(quantity) -> str:
    for text in (quantity.code, quantity.unit):
        if text and str(text).strip().lower() in UNIT_SCALE_TO_MV:
            return str(text).strip()
    return str(quantity.code or quantity.unit or "")


def _values(sampled, lead: str) -> np.ndarray:
    """The physical values of one SampledData, in the unit of its origin."""
    if sampled.dimensions != 1:
        raise ECGInputError(
            InputErrorReason.BAD_SHAPE,
            f"lead {lead}: SampledData.dimensions is {sampled.dimensions}; send one component per lead "
            "(dimensions 1)",
        )
    tokens = (sampled.data or "").split()
    if not tokens:
        raise ECGInputError(InputErrorReason.TOO_SHORT, f"lead {lead}: SampledData.data is empty")
    low = None if sampled.lowerLimit is None else float(sampled.lowerLimit)
    high = None if sampled.upperLimit is None else float(sampled.upperLimit)
    factor = 1.0 if sampled.factor is None else float(sampled.factor)
    origin = float(sampled.origin.value or 0)
    if not any(token in ("E", "L", "U") for token in tokens):
        try:  # the usual message: plain decimals, parsed in one go
            return origin + factor * np.asarray(tokens, dtype=np.float64)
        except ValueError:
            pass  # a bad token: found and named below
    raw = np.empty(len(tokens), dtype=np.float64)
    for k, token in enumerate(tokens):
        if token == "E":
            raw[k] = np.nan
        elif token == "L" or token == "U":
            limit = low if token == "L" else high
            if limit is None:
                raise _bad(f"lead {lead}: data holds {token!r} but SampledData has no "
                           f"{'lowerLimit' if token == 'L' else 'upperLimit'}")
            raw[k] = (limit - origin) / factor if factor else np.nan
        else:
            try:
                raw[k] = float(Decimal(token))
            except ArithmeticError as exc:
                raise _bad(f"lead {lead}: data value {token!r} at {k} is not a decimal, E, L or U") from exc
    return origin + factor * raw


def _reference_id(reference) -> str:
    if reference is None:
        return ""
    if reference.reference:
        return str(reference.reference).rstrip("/").rsplit("/", 1)[-1]
    if reference.identifier is not None and reference.identifier.value:
        return str(reference.identifier.value)
    return str(reference.display or "")


def observation_patient_id(obs: Observation) -> str:
    """The Patient id an Observation is about (``subject``), '' when it names none."""
    return _reference_id(obs.subject)


def _effective(obs: Observation) -> datetime | None:
    at = obs.effectiveDateTime or obs.effectiveInstant
    if at is None and obs.effectivePeriod is not None:
        at = obs.effectivePeriod.start
    if isinstance(at, datetime):
        return at
    return None  # a date without a time cannot place samples


def observation_to_ecg(
    obs: Observation,
    *,
    units: str | None = None,
    patient_id: str | None = None,
    device_id: str | None = None,
    source: str = "",
) -> ECG:
    """The ECG of one parsed R4 Observation (see the module docstring for the mapping).

    ``units`` is used for leads whose ``origin`` has no unit (FHIR's own ECG example gives none);
    without it such a lead is refused with ``BAD_UNITS``.
    Raises ``ECGInputError``: ``BAD_MESSAGE`` (no sampled component, bad data token, leads of
    different rates or lengths), ``UNKNOWN_LEAD``, ``DUPLICATE_LEAD``, ``BAD_UNITS``,
    ``BAD_SAMPLING_RATE``, ``BAD_SHAPE``, ``TOO_SHORT``, ``NON_FINITE``.
    """
    leads, rows, periods, codes, others = [], [], [], [], []
    for index, component in enumerate(obs.component or []):
        sampled = component.valueSampledData
        if sampled is None:
            others.append(_describe(component.code))
            continue
        lead = _lead_of(component.code)
        if lead is None:
            raise ECGInputError(
                InputErrorReason.UNKNOWN_LEAD,
                f"component {index}: code {_describe(component.code)} names no ECG lead; use MDC "
                "(131329 / MDC_ECG_ELEC_POTL_I, MDC_ECG_LEAD_I) or a lead name",
            )
        if lead in leads:
            raise ECGInputError(InputErrorReason.DUPLICATE_LEAD, f"lead {lead} is sent in two components")
        unit = _units(sampled.origin) or (units or "")
        if unit.lower() not in UNIT_SCALE_TO_MV:
            raise ECGInputError(
                InputErrorReason.BAD_UNITS,
                f"lead {lead}: SampledData.origin unit {unit!r} is not a voltage (UCUM mV, uV or V)",
            )
        period = float(sampled.period)
        if not period > 0:
            raise ECGInputError(
                InputErrorReason.BAD_SAMPLING_RATE, f"lead {lead}: SampledData.period must be > 0 ms, got {period}"
            )
        rows.append(to_millivolts(_values(sampled, lead), unit))
        leads.append(lead)
        periods.append(period)
        codes.append(_describe(component.code))
    if not rows and obs.valueSampledData is not None:
        # One lead per Observation (single-lead devices): the Observation's own code names the lead.
        lead = _lead_of(obs.code)
        if lead is None:
            raise ECGInputError(
                InputErrorReason.UNKNOWN_LEAD,
                f"Observation.valueSampledData with code {_describe(obs.code)}: a single-lead Observation's "
                "code must name the lead (MDC or a lead name); 12-lead ECGs go in components",
            )
        unit = _units(obs.valueSampledData.origin) or (units or "")
        if unit.lower() not in UNIT_SCALE_TO_MV:
            raise ECGInputError(InputErrorReason.BAD_UNITS, f"lead {lead}: origin unit {unit!r} is not a voltage")
        rows.append(to_millivolts(_values(obs.valueSampledData, lead), unit))
        leads.append(lead)
        periods.append(float(obs.valueSampledData.period))
        codes.append(_describe(obs.code))
        if not periods[0] > 0:
            raise ECGInputError(InputErrorReason.BAD_SAMPLING_RATE, f"lead {lead}: period must be > 0 ms")
    if not rows:
        raise _bad("the Observation has no component with valueSampledData (no waveform)")
    if len(set(periods)) > 1:
        raise ECGInputError(
            InputErrorReason.BAD_SAMPLING_RATE,
            f"leads are sampled at different periods {sorted(set(periods))} ms",
        )
    lengths = {len(r) for r in rows}
    if len(lengths) > 1:
        raise ECGInputError(
            InputErrorReason.BAD_SHAPE, f"leads hold different sample counts {sorted(lengths)}"
        )
    metadata = {
        "format": "fhir",
        "observation_id": obs.id or "",
        "observation_reference": f"Observation/{obs.id}" if obs.id else "",
        "lead_codes": codes,
        "other_components": others,
        "status": obs.status,
    }
    fs_hz = 1000.0 / periods[0]
    # A decimal period cannot hold 1000/360 exactly: a rate within a millionth of a whole number
    # of Hz is that number.
    if abs(fs_hz - round(fs_hz)) < 1e-6 * fs_hz:
        fs_hz = float(round(fs_hz))
    return ECG(
        samples=np.stack(rows),
        fs_hz=fs_hz,
        lead_names=tuple(leads),
        units="mV",
        patient_id=patient_id if patient_id is not None else _reference_id(obs.subject),
        device_id=device_id if device_id is not None else _reference_id(obs.device),
        acquired_at=_effective(obs),
        source=source,
        metadata=metadata,
    )


def read_fhir(
    source: str | bytes | Path | Mapping[str, Any],
    *,
    index: int | None = None,
    units: str | None = None,
    patient_id: str | None = None,
    device_id: str | None = None,
) -> ECG:
    """Read an ECG Observation (a ``.json``/``.fhir`` file, JSON text, or a dict) as an :class:`ECG`.

    A Bundle must hold exactly one Observation unless ``index`` picks one. ``units`` is the unit
    of leads whose ``origin`` gives none. Errors: see :func:`observation_to_ecg`; a file that
    cannot be read is ``UNREADABLE``.
    """
    where = str(source) if isinstance(source, Path) else ""
    try:
        observations = list(fhir_observations(source))
        if index is None and len(observations) > 1:
            raise _bad(f"the Bundle holds {len(observations)} Observations; pick one with index=")
        chosen = observations[index or 0] if (index or 0) < len(observations) else None
        if chosen is None:
            raise _bad(f"no Observation {index}; the Bundle holds {len(observations)}")
        return observation_to_ecg(chosen, units=units, patient_id=patient_id, device_id=device_id, source=where)
    except ECGInputError as exc:
        if where:
            raise ECGInputError(exc.reason, f"{where}: {exc.detail}") from exc
        raise


def _number(value: float) -> str:
    text = f"{value:.12g}"
    return text if "e" not in text else f"{value:.12f}".rstrip("0").rstrip(".")


def ecg_to_observation(
    ecg: ECG,
    *,
    observation_id: str | None = None,
    resolution_uv: float = 1.0,
    status: str = "final",
) -> Observation:
    """An R4 Observation holding ``ecg``: one component per lead, MDC_ECG_ELEC_POTL codes.

    Samples are written as integer multiples of ``resolution_uv`` (SampledData ``factor``), origin
    0 µV, so a round trip is exact to ``resolution_uv / 2``. ``subject`` is
    ``Patient/<patient_id>``, ``device`` ``Device/<device_id>``; lead names must be canonical
    after :func:`~hfrisk.model.contract.leads.normalise_lead_name`.
    """
    ecg = ecg.in_millivolts()
    period_ms = 1000.0 / ecg.fs_hz
    components = []
    for name, lead in zip(ecg.lead_names, ecg.samples):
        canonical, inverted = normalise_lead_name(name)
        if canonical is None or inverted:
            raise ValueError(f"lead {name!r} has no MDC code; conform the leads first")
        counts = np.round(lead.astype(np.float64) * 1000.0 / resolution_uv).astype(np.int64)
        components.append(
            {
                "code": {
                    "coding": [{"system": MDC_SYSTEM, "code": str(mdc_code(canonical)),
                                "display": mdc_refid(canonical)}],
                    "text": canonical,
                },
                "valueSampledData": {
                    "origin": {"value": 0, "unit": "uV", "system": _UCUM, "code": "uV"},
                    "period": Decimal(_number(period_ms)),
                    "factor": Decimal(_number(resolution_uv)),
                    "dimensions": 1,
                    "data": " ".join(map(str, counts.tolist())),
                },
            }
        )
    at = ecg.acquired_at
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": status,
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "procedure"}]}],
        "code": {"coding": [dict(ECG_OBSERVATION_CODE)], "text": "12-lead ECG waveform"},
        "component": components,
    }
    if observation_id:
        resource["id"] = observation_id
    if ecg.patient_id:
        resource["subject"] = {"reference": f"Patient/{ecg.patient_id}"}
    if ecg.device_id:
        resource["device"] = {"reference": f"Device/{ecg.device_id}"}
    if at is not None:
        resource["effectiveDateTime"] = (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).isoformat()
    return Observation.model_validate(resource)
