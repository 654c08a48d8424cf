"""HL7 v2 ORU^R01 waveform messages in and out of the canonical :class:`ECG`, through python-hl7.

Bedside monitor gateways send a waveform as one OBX per lead with value type ``NA`` (numeric
array: samples separated by ``^``), described in one of two ways, both read here:

* **HL7 v2 channel definitions** (v2.5 chapter 7.14): an OBX of type ``CD`` with the same OBX-4
  sub-ID as the lead's ``NA`` OBX: CD.1 channel number & name (``1&I``), CD.3 sensitivity & unit
  (``5&uV&UCUM``), CD.4 calibration correction factor & baseline & time skew, CD.5 sampling
  frequency (Hz). Value = ``(sample - baseline) * sensitivity * correction`` in the CD.3 unit;
* **multiplexed** (v2.5 7.14, value type ``MA``): one OBX holds every channel, a sample's values
  separated by ``^`` and samples by ``~``; its channels are the ``CD`` OBXs with its OBX-4 sub-ID
  (else those before it), in the order of their channel numbers;
* **IHE PCD style** (monitor gateways without CD): the lead is named by the ``NA`` OBX's own
  OBX-3 (MDC ``131329^MDC_ECG_ELEC_POTL_I^MDC`` or ``MDC_ECG_LEAD_*``), its unit by OBX-6 (UCUM
  ``uV``/``mV`` or ``MDC_DIM_MICRO_VOLT``), and the rate by an ``NM`` OBX whose OBX-3 names
  ``MDC_ATTR_SAMP_RATE`` (value in Hz; the nearest one before the lead, else any in the message).

The lead name comes from CD.1's name, else OBX-3 (MDC code, reference id or text), normalised by
:func:`~hfrisk.model.contract.leads.normalise_lead_name`. Non-ECG channels (``Pleth``, ``Resp``)
are dropped and listed in ``metadata["dropped_channels"]``. The acquisition time is a ``TS``/
``DTM`` OBX (time of the first sample, 7.14.1.5), else OBX-14, else OBR-7. Patient id: PID-3.1;
device: OBX-18.1, else MSH-3 (sending application).

Example::

    message = ecg_to_oru_r01(read_wfdb("tests/data/ecg/ptbxl/records500/00000/00001_hr"))
    ecg = read_hl7(str(message))   # 12 leads at 500 Hz, within 0.5 µV of the source
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import hl7
import numpy as np

from hfrisk.model.contract.ecg import ECG, UNIT_SCALE_TO_MV, to_millivolts
from hfrisk.model.contract.errors import ECGInputError, InputErrorReason
from hfrisk.model.contract.leads import normalise_lead_name
from hfrisk.model.readers.mdc_codes import mdc_code, mdc_lead, mdc_refid, mdc_voltage_unit

__all__ = [
    "read_hl7",
    "parse_oru",
    "ParsedORU",
    "oru_to_ecg",
    "ecg_to_oru_r01",
    "HL7_EXTENSIONS",
    "HL7MessageError",
]

HL7_EXTENSIONS = frozenset({".hl7", ".oru"})
_SAMPLE_RATE_REFID = "MDC_ATTR_SAMP_RATE"
_RATE_UNITS = {"hz", "/s", "1/s", "mdc_dim_per_sec", "mdc_dim_hz"}


class HL7MessageError(ECGInputError):
    """A message that is not a usable ORU^R01 at all (HL7 application reject, MSA ``AR``).

    Its reason is ``BAD_MESSAGE``; content errors in a well-formed ORU are plain
    :class:`ECGInputError` (application error, MSA ``AE``).
    """

    def __init__(self, message: str):
        super().__init__(InputErrorReason.BAD_MESSAGE, message)


@dataclass(frozen=True)
class ParsedORU:
    """An ORU^R01 parsed by python-hl7, with the sample arrays of its ``NA`` OBX segments kept aside.

    ``message`` is python-hl7's message with every ``NA``/``MA`` OBX-5 emptied; ``arrays`` maps the
    index of such an OBX among the message's OBX segments to its OBX-5 text. python-hl7 builds an
    object per component, which for the ~60,000 samples of a 10-s 12-lead message cost 0.2 s;
    the samples are read with one numpy call instead.
    """

    message: hl7.Message
    arrays: dict[int, str]
    component_separator: str = "^"
    repetition_separator: str = "~"


def parse_oru(text: str | bytes) -> ParsedORU:
    """Parse an ORU^R01 (segments separated by CR, LF or CRLF); raise :class:`HL7MessageError`."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            text = text.decode("latin-1")
    text = text.strip().replace("\r\n", "\r").replace("\n", "\r")
    if not text.startswith("MSH") or len(text) < 8:
        raise HL7MessageError("not an HL7 v2 message: it does not start with an MSH segment")
    field_sep, component_sep, repetition_sep = text[3], text[4], text[5]
    segments, arrays, n_obx = [], {}, 0
    for segment in text.split("\r"):
        if segment.startswith(f"OBX{field_sep}"):
            fields = segment.split(field_sep)
            if len(fields) > 5 and fields[2] in ("NA", "MA"):
                arrays[n_obx] = fields[5]
                fields[5] = ""
                segment = field_sep.join(fields)
            n_obx += 1
        segments.append(segment)
    try:
        message = hl7.parse("\r".join(segments))
        kind = (str(message["MSH.F9.R1.C1"]), str(message["MSH.F9.R1.C2"]))
    except Exception as exc:  # python-hl7 raises ParseException, KeyError, IndexError
        raise HL7MessageError(f"cannot parse HL7 message: {type(exc).__name__}: {exc}") from exc
    if kind != ("ORU", "R01"):
        raise HL7MessageError(f"message type {'^'.join(kind)}: only ORU^R01 waveform messages are accepted")
    return ParsedORU(message, arrays, component_sep, repetition_sep)


def _get(segment, field: int, component: int = 1, subcomponent: int = 1) -> str:
    """Text of ``segment``-field.component.subcomponent, 1-based, '' when absent."""
    try:
        value = segment(field)(1)(component)(subcomponent)
    except (IndexError, KeyError, TypeError):
        try:
            value = segment(field)(1)(component) if subcomponent == 1 else ""
        except (IndexError, KeyError, TypeError):
            try:
                value = segment(field) if component == 1 and subcomponent == 1 else ""
            except (IndexError, KeyError, TypeError):
                return ""
    return str(value).strip()


def _segments(message: hl7.Message, name: str) -> list:
    return [segment for segment in message if str(segment[0]) == name]


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise ECGInputError(InputErrorReason.BAD_MESSAGE, f"{what}: {text!r} is not a number") from exc
    if not np.isfinite(value):
        raise ECGInputError(InputErrorReason.NON_FINITE, f"{what}: {text!r} is not finite")
    return value


def _hl7_time(text: str) -> datetime | None:
    """An HL7 TS/DTM (``YYYYMMDDHHMMSS[.S+][+/-ZZZZ]``) as a datetime; None when absent or partial."""
    text = text.strip()
    if len(text) < 14:
        return None
    zone = None
    for sign in ("+", "-"):
        if sign in text[8:]:
            text, _, offset = text.rpartition(sign)
            try:
                zone = datetime.strptime(f"{sign}{offset}", "%z").tzinfo
            except ValueError:
                return None
    try:
        return datetime.strptime(text, "%Y%m%d%H%M%S.%f" if "." in text else "%Y%m%d%H%M%S").replace(tzinfo=zone)
    except ValueError:
        return None


def _lead_name(identifier: str, text: str) -> str:
    """The channel's name for the ECG type: canonical for MDC codes, as written otherwise."""
    for token in (identifier, text):
        lead = mdc_lead(token) if token else None
        if lead is not None:
            return lead
    return text or identifier


def _unit(identifier: str, text: str) -> str:
    for token in (identifier, text):
        if token.lower() in UNIT_SCALE_TO_MV:
            return token
        unit = mdc_voltage_unit(token)
        if unit is not None:
            return unit
    return identifier or text


def _is_rate(obx) -> bool:
    return any(_SAMPLE_RATE_REFID in _get(obx, 3, c).upper() for c in (1, 2))


def _numbers(values: list, what: str) -> np.ndarray:
    """Sample texts (a list, or a list of lists for MA) as float64, one numpy call."""
    try:
        return np.asarray(values, dtype=np.float64)
    except ValueError as exc:
        raise ECGInputError(InputErrorReason.BAD_MESSAGE, f"{what} holds a value that is not a number: {exc}") from exc


def _channels(observations: list, arrays: dict[int, str], component_sep: str, repetition_sep: str):
    """``(obx index, obx, its CD or None, samples loader)`` for each waveform channel, in order.

    An ``NA`` OBX is one channel, described by the CD with its OBX-4 sub-ID if there is one. An
    ``MA`` OBX (multiplexed: a sample's channel values separated by ``^``, samples by ``~``) holds
    one channel per CD OBX with its sub-ID (else per CD before it not taken by an ``NA``), in
    the order of their channel numbers (CD.1.1).
    """
    definitions = [(k, obx) for k, obx in enumerate(observations) if _get(obx, 2) == "CD"]
    by_sub_id = {_get(obx, 4): obx for _, obx in definitions}
    na_sub_ids = {_get(obx, 4) for obx in observations if _get(obx, 2) == "NA"}
    out = []
    for k, obx in enumerate(observations):
        kind = _get(obx, 2)
        if kind not in ("NA", "MA"):
            continue
        text = arrays[k] if k in arrays else str(obx(5))
        where = f"OBX {_get(obx, 4) or k + 1}"
        if kind == "NA":
            def load(text=text, where=where) -> np.ndarray:
                values = text.split(component_sep)
                if values == [""]:
                    raise ECGInputError(InputErrorReason.TOO_SHORT, f"{where}: OBX-5 holds no samples")
                return _numbers(values, f"{where} OBX-5")

            out.append((k, obx, by_sub_id.get(_get(obx, 4)), load))
            continue
        group = [cd for _, cd in definitions if _get(cd, 4) == _get(obx, 4)] if _get(obx, 4) else []
        if not group:
            group = [cd for j, cd in definitions if j < k and _get(cd, 4) not in na_sub_ids]
        if not group:
            raise ECGInputError(InputErrorReason.BAD_MESSAGE,
                                f"{where}: an MA (multiplexed) OBX needs CD OBX channel definitions before it")
        group.sort(key=lambda cd: int(_get(cd, 5, 1, 1)) if _get(cd, 5, 1, 1).isdigit() else 0)
        sets = [sample.split(component_sep) for sample in text.split(repetition_sep) if sample]
        if not sets:
            raise ECGInputError(InputErrorReason.TOO_SHORT, f"{where}: OBX-5 holds no samples")
        widths = {len(values) for values in sets}
        if widths != {len(group)}:
            raise ECGInputError(InputErrorReason.BAD_SHAPE,
                                f"{where}: samples of {sorted(widths)} values for {len(group)} channel definitions")
        matrix = _numbers(sets, f"{where} OBX-5")
        for j, cd in enumerate(group):
            out.append((k, obx, cd, lambda j=j, matrix=matrix: matrix[:, j]))
    return out


def oru_to_ecg(
    parsed: ParsedORU | hl7.Message,
    *,
    patient_id: str | None = None,
    device_id: str | None = None,
    source: str = "",
) -> ECG:
    """The ECG of a parsed ORU^R01 (see the module docstring for the mapping).

    Raises ``ECGInputError``: ``BAD_MESSAGE`` (no patient id, no waveform OBX, a sample that is
    not a number, a CD field that is not), ``UNKNOWN_LEAD``, ``DUPLICATE_LEAD``, ``BAD_UNITS``,
    ``BAD_SAMPLING_RATE`` (no or different rates), ``BAD_SHAPE`` (leads of different lengths),
    ``NON_FINITE``.
    """
    if isinstance(parsed, ParsedORU):
        message, arrays = parsed.message, parsed.arrays
        component_sep, repetition_sep = parsed.component_separator, parsed.repetition_separator
    else:  # a message the caller parsed with hl7.parse: samples still in the OBX segments
        message, arrays, component_sep, repetition_sep = parsed, {}, "^", "~"
    pid = _segments(message, "PID")
    patient = patient_id if patient_id is not None else (_get(pid[0], 3) if pid else "")
    if not patient:
        raise ECGInputError(InputErrorReason.BAD_MESSAGE, "no patient id: PID-3 is missing or empty")

    observations = _segments(message, "OBX")
    rate_obx = [(k, obx) for k, obx in enumerate(observations) if _get(obx, 2) == "NM" and _is_rate(obx)]
    started = None
    for obx in observations:
        if _get(obx, 2) in ("TS", "DTM"):
            started = _hl7_time(_get(obx, 5))
            break

    leads, rows, rates, codes, dropped, equipment = [], [], [], [], [], ""
    seen: set[str] = set()
    for k, obx, cd, load in _channels(observations, arrays, component_sep, repetition_sep):
        sub_id = _get(obx, 4)
        code = (_get(obx, 3, 1), _get(obx, 3, 2))
        if cd is not None:
            channel_name = _get(cd, 5, 1, 2)
            name = _lead_name("", channel_name) if channel_name else _lead_name(_get(cd, 3, 1), _get(cd, 3, 2))
            sensitivity = _number(_get(cd, 5, 3, 1) or "1", f"OBX {sub_id} CD.3 sensitivity")
            unit = _unit(_get(cd, 5, 3, 2), _get(cd, 5, 3, 3))
            correction = _number(_get(cd, 5, 4, 1) or "1", f"OBX {sub_id} CD.4 correction factor")
            baseline = _number(_get(cd, 5, 4, 2) or "0", f"OBX {sub_id} CD.4 baseline")
            rate_text = _get(cd, 5, 5)
        else:
            name = _lead_name(*code)
            sensitivity, correction, baseline = 1.0, 1.0, 0.0
            unit = _unit(_get(obx, 6, 1), _get(obx, 6, 2))
            before = [r for j, r in rate_obx if j < k] or [r for _, r in rate_obx]
            rate_text = _get(before[-1], 5) if before else ""
        if unit.lower() not in UNIT_SCALE_TO_MV:
            try:
                lead, _ = normalise_lead_name(name)
            except ECGInputError:
                lead = name
            if lead is None or unit:
                dropped.append({"name": name, "units": unit, "reason": "not a voltage"})
                continue
            raise ECGInputError(
                InputErrorReason.BAD_UNITS,
                f"lead {name} (OBX {sub_id or k + 1}) has no unit: give OBX-6 (uV, mV, MDC_DIM_MICRO_VOLT) "
                "or a CD channel definition",
            )
        try:
            canonical, _ = normalise_lead_name(name)
        except ECGInputError as exc:
            raise ECGInputError(exc.reason, f"OBX {sub_id or k + 1}: {exc.detail}") from exc
        if canonical is None:
            dropped.append({"name": name, "units": unit, "reason": "not an ECG lead"})
            continue
        if canonical in seen:
            raise ECGInputError(InputErrorReason.DUPLICATE_LEAD, f"lead {canonical} is sent in two OBX segments")
        seen.add(canonical)
        if not rate_text:
            raise ECGInputError(
                InputErrorReason.BAD_SAMPLING_RATE,
                f"lead {name}: no sampling rate (CD.5 of a CD OBX with sub-ID {sub_id!r}, or an NM OBX "
                f"coded {_SAMPLE_RATE_REFID})",
            )
        rate = _number(rate_text, f"lead {name} sampling rate")
        samples = load()
        rows.append(to_millivolts((samples - baseline) * sensitivity * correction, unit))
        leads.append(name)
        rates.append(rate)
        codes.append("^".join(code) if cd is None else "^".join((_get(cd, 3, 1), _get(cd, 3, 2))))
        equipment = equipment or _get(obx, 18)
        if started is None:
            started = _hl7_time(_get(obx, 14))

    if not rows:
        raise ECGInputError(InputErrorReason.BAD_MESSAGE, "no ECG waveform: no OBX of value type NA or MA with an ECG lead")
    if len(set(rates)) > 1:
        raise ECGInputError(InputErrorReason.BAD_SAMPLING_RATE, f"leads are sampled at different rates {sorted(set(rates))} Hz")
    lengths = {len(r) for r in rows}
    if len(lengths) > 1:
        raise ECGInputError(InputErrorReason.BAD_SHAPE, f"leads hold different sample counts {sorted(lengths)}")
    if started is None:
        obr = _segments(message, "OBR")
        started = _hl7_time(_get(obr[0], 7)) if obr else None
    msh = _segments(message, "MSH")[0]
    metadata = {
        "format": "hl7v2",
        "message_control_id": str(message["MSH.F10"]),
        "version": str(message["MSH.F12"]),
        "lead_codes": codes,
        "dropped_channels": dropped,
        "sending_facility": _get(msh, 4),
    }
    return ECG(
        samples=np.stack(rows),
        fs_hz=rates[0],
        lead_names=tuple(leads),
        units="mV",
        patient_id=patient,
        device_id=device_id if device_id is not None else (equipment or _get(msh, 3)),
        acquired_at=started,
        source=source,
        metadata=metadata,
    )


def read_hl7(
    source: str | bytes | Path, *, patient_id: str | None = None, device_id: str | None = None
) -> ECG:
    """Read an ORU^R01 waveform message (a ``.hl7``/``.oru`` file, or the message text)."""
    where = ""
    if isinstance(source, Path):
        where = str(source)
        try:
            source = source.read_bytes()
        except OSError as exc:
            raise ECGInputError(InputErrorReason.UNREADABLE, f"{where}: {exc}") from exc
    try:
        return oru_to_ecg(parse_oru(source), patient_id=patient_id, device_id=device_id, source=where)
    except HL7MessageError as exc:
        raise HL7MessageError(f"{where}: {exc.detail}" if where else exc.detail) from exc
    except ECGInputError as exc:
        raise ECGInputError(exc.reason, f"{where}: {exc.detail}" if where else exc.detail) from exc


def _ts(at: datetime) -> str:
    at = at.astimezone(timezone.utc) if at.tzinfo else at
    return at.strftime("%Y%m%d%H%M%S") + (f".{at.microsecond // 1000:03d}" if at.microsecond else "") + (
        "+0000" if at.tzinfo else ""
    )


def ecg_to_oru_r01(
    ecg: ECG,
    *,
    message_id: str = "1",
    sending_application: str = "HFRISK",
    resolution_uv: float = 1.0,
    channel_definitions: bool = True,
    multiplexed: bool = False,
    version: str = "2.6",
) -> hl7.Message:
    """An ORU^R01 holding ``ecg``: one ``NA`` OBX per lead, samples in ``resolution_uv`` counts.

    With ``channel_definitions`` each lead gets a ``CD`` OBX (v2.5 7.14: name, sensitivity in µV,
    rate); without, the IHE PCD form (MDC lead code in OBX-3, ``uV`` in OBX-6, one ``NM``
    ``MDC_ATTR_SAMP_RATE`` OBX). ``multiplexed`` writes the CDs (sub-ID 1) and then one ``MA`` OBX
    holding every lead. A round trip is exact to ``resolution_uv / 2``.
    """
    ecg = ecg.in_millivolts()
    for text in (ecg.patient_id, ecg.device_id, message_id, sending_application):
        if any(ch in text for ch in "|^~\\&\r\n"):
            raise ValueError(f"{text!r} holds an HL7 separator; escape it first")
    now = datetime.now(timezone.utc)
    at = ecg.acquired_at or now
    rate = f"{ecg.fs_hz:.12g}"
    segments = [
        f"MSH|^~\\&|{sending_application}|{ecg.device_id}|HFRISK||{_ts(now)}||ORU^R01^ORU_R01|{message_id}|P|{version}",
        f"PID|1||{ecg.patient_id}",
        f"OBR|1|||{mdc_code('I') - 1}^MDC_ECG_ELEC_POTL^MDC|||{_ts(at)}",
        f"OBX|1|DTM|TIME_OF_FIRST_SAMPLE^Time of first sample||{_ts(at)}||||||F",
    ]
    if not channel_definitions:
        segments.append(f"OBX|2|NM|{_SAMPLE_RATE_REFID}^Sample rate^MDC|0|{rate}|Hz^^UCUM|||||F")
    n = sum(1 for segment in segments if segment.startswith("OBX"))
    if multiplexed:
        channels = []
        for i, name in enumerate(ecg.lead_names, start=1):
            canonical, inverted = normalise_lead_name(name)
            if canonical is None or inverted:
                raise ValueError(f"lead {name!r} has no MDC code; conform the leads first")
            n += 1
            segments.append(f"OBX|{n}|CD|{mdc_code(canonical)}^{mdc_refid(canonical)}^MDC|1|"
                            f"{i}&{canonical}^^{resolution_uv:.12g}&uV&UCUM^1&0&0^{rate}||||||F")
            channels.append(canonical)
        counts = np.round(ecg.samples.astype(np.float64).T * 1000.0 / resolution_uv).astype(np.int64)
        values = "~".join("^".join(map(str, sample)) for sample in counts.tolist())
        segments.append(f"OBX|{n + 1}|MA|{mdc_code('I') - 1}^MDC_ECG_ELEC_POTL^MDC|1|{values}||||||F|||"
                        f"{_ts(at)}||||{ecg.device_id}")
        return hl7.parse("\r".join(segments))
    for i, (name, lead) in enumerate(zip(ecg.lead_names, ecg.samples), start=1):
        canonical, inverted = normalise_lead_name(name)
        if canonical is None or inverted:
            raise ValueError(f"lead {name!r} has no MDC code; conform the leads first")
        code = f"{mdc_code(canonical)}^{mdc_refid(canonical)}^MDC"
        counts = np.round(lead.astype(np.float64) * 1000.0 / resolution_uv).astype(np.int64)
        values = "^".join(map(str, counts.tolist()))
        if channel_definitions:
            n += 1
            segments.append(
                f"OBX|{n}|CD|{code}|{i}|{i}&{canonical}^^{resolution_uv:.12g}&uV&UCUM^1&0&0^{rate}||||||F"
            )
            unit = ""
        else:
            # No sensitivity without a CD: the values themselves are in µV.
            unit = "uV^^UCUM"
            if resolution_uv != 1.0:
                values = "^".join(f"{v:.12g}" for v in (counts * resolution_uv).tolist())
        n += 1
        segments.append(
            f"OBX|{n}|NA|{code}|{i}|{values}|{unit}|||||F|||{_ts(at)}||||{ecg.device_id}"
        )
    return hl7.parse("\r".join(segments))
