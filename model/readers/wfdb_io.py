"""WFDB records (PhysioNet ``.hea`` + ``.dat``/``.mat``) in and out of the canonical :class:`ECG`.

Reading keeps what the source says and only fixes what would be wrong downstream:

* every channel is converted to millivolts from its own header unit (``mV``, PTB-XL-in-CinC's
  ``mv``, ``uV``, ...);
* channels that are not electrical (``mmHg``, ``NU``, or a respiration/pleth/pressure signal,
  whose header often gives no unit at all, which WFDB then reads as ``mV``) are not ECG: they are
  dropped and listed in ``metadata["dropped_channels"]``. Dropping happens before the samples are
  read, so an invalid (NaN) sample in such a channel does not stop the ECG from loading;
* lead names are returned exactly as written (``i``, ``AVR``, ``MLII``, ``vx``);
  :mod:`hfrisk.model.contract.leads` normalises and reorders them;
* channels stored at several samples per frame (MIMIC's 4x ECG) keep their full rate when all
  kept channels share it.

Example::

    ecg = read_wfdb("tests/data/ecg/ptbxl/records100/00000/00001_lr")
    ecg.samples.shape, ecg.fs_hz, ecg.lead_names[:3]   # (12, 1000), 100.0, ('I', 'II', 'III')
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from datetime import datetime, time, timedelta, timezone
from pathlib import Path

import numpy as np
import wfdb

from hfrisk.model.contract.ecg import ECG, UNIT_SCALE_TO_MV, rows_to_millivolts
from hfrisk.model.contract.errors import ECGInputError, InputErrorReason
from hfrisk.model.readers import wfdb_fast

__all__ = [
    "read_wfdb",
    "write_wfdb",
    "resolve_record",
    "is_ecg_channel",
    "NON_ECG_SIGNALS",
    "WFDB_EXTENSIONS",
]

# Files that belong to a WFDB record; any of them names the record.
WFDB_EXTENSIONS = frozenset({".hea", ".dat", ".mat", ".xyz", ".atr", ".qrs"})

# First word of signal names that are physiological but not electrocardiographic. Needed besides
# the unit check because WFDB headers often omit the unit of such channels (MIMIC's RESP), and a
# missing unit reads as mV. EEG/EOG/EMG are voltages, but not heart leads.
NON_ECG_SIGNALS = frozenset(
    {
        "ABP", "ART", "AOBP", "PAP", "CVP", "ICP", "LAP", "RAP", "UAP", "BP", "NBP", "NIBP",
        "PLETH", "PPG", "SPO2", "SAO2", "PULSE", "HR",
        "RESP", "RESPIRATION", "CO2", "ETCO2", "AWP", "AWF", "AWV", "FLOW", "THOR", "ABDO",
        "TEMP", "EEG", "EOG", "EMG", "STATUS",
    }
)

# The PhysioNet/CinC 2018 (CPSC) headers write "DD-Mon-YYYY HH:MM:SS", which WFDB misreads.
_HEADER_TIME_FORMATS = ("%d-%b-%Y %H:%M:%S", "%d-%b-%Y %H:%M:%S.%f")
_ID_FIELDS = ("patient_id", "device_id")
_TZ_FIELD = "timezone"


def resolve_record(record_path: str | Path) -> Path:
    """The WFDB record path (no extension) for a record given with or without an extension.

    ``00001_lr``, ``00001_lr.hea`` and ``00001_lr.dat`` all give ``00001_lr`` (WFDB record names
    hold no dots, so the last suffix is never part of the name).
    Raises ``ECGInputError(UNREADABLE)`` when no header can be found.
    """
    path = Path(record_path)
    # A batch names records by their .hea files: look there first (one stat, not two).
    if path.suffix.lower() in WFDB_EXTENSIONS and path.with_suffix(".hea").is_file():
        return path.with_suffix("")
    if Path(f"{path}.hea").is_file():
        return path
    raise ECGInputError(
        InputErrorReason.UNREADABLE,
        f"{path}: no WFDB header ({path.with_suffix('').name}.hea) next to it; "
        "a WFDB record needs its .hea file",
    )


@lru_cache(maxsize=4096)  # a batch's records name the same channels: one regex each, not one a record
def is_ecg_channel(name: str, units: str) -> bool:
    """Whether a channel carries an ECG lead: a voltage unit and not a known non-ECG signal."""
    if units.strip().lower() not in UNIT_SCALE_TO_MV:
        return False
    first_word = re.match(r"[A-Za-z0-9]*", name.strip()).group().upper()
    return first_word not in NON_ECG_SIGNALS


def _unreadable(record: Path, what: str, exc: BaseException | None = None) -> ECGInputError:
    detail = f": {type(exc).__name__}: {exc}" if exc is not None else ""
    return ECGInputError(InputErrorReason.UNREADABLE, f"{record}: {what}{detail}")


def _header_fields(comments: Sequence[str]) -> dict[str, str]:
    """``Key: value`` header comments (``Age: 59``, ``Dx: 164934002,...``) as a dict, keys as written."""
    fields: dict[str, str] = {}
    for line in comments:
        key, sep, value = line.partition(":")
        if sep and key.strip() and value.strip():
            fields.setdefault(key.strip(), value.strip())
    return fields


def _record_line(header_text: str) -> list[str]:
    """Tokens of the header's record line (the first line that is not a comment)."""
    for line in header_text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            return line.split()
    return []


def _start_datetime(header: wfdb.Record, header_text: str) -> tuple[datetime | None, str]:
    """Acquisition start from the header's base date/time; also the raw text it came from."""
    raw = " ".join(_record_line(header_text)[4:])
    if header.base_date is not None:
        return datetime.combine(header.base_date, header.base_time or time(0)), raw
    if not raw:  # no time at all (PTB-XL): each failed strptime raised, ~10 µs a read
        return None, raw
    for fmt in _HEADER_TIME_FORMATS:
        try:
            return datetime.strptime(raw, fmt), raw
        except ValueError:
            continue
    # A time without a date (or nothing) cannot be placed in calendar time.
    return None, raw


def _select_channels(
    names: Sequence[str], units: Sequence[str], channels: Sequence[int | str] | None, record: Path
) -> tuple[list[int], list[dict]]:
    """Indices of the channels to read, in the order asked for, and the channels dropped."""
    if channels is None:
        wanted = list(range(len(names)))
    else:
        wanted = []
        for ch in channels:
            if isinstance(ch, (int, np.integer)) and not isinstance(ch, bool):
                if not 0 <= ch < len(names):
                    raise ECGInputError(
                        InputErrorReason.MISSING_LEADS,
                        f"{record}: channel index {ch} out of range; record has {len(names)} channels",
                    )
                wanted.append(int(ch))
                continue
            exact = [i for i, n in enumerate(names) if n == ch]
            # Names differ in case between sources (s0010_re writes 'avr'); accept either.
            loose = [i for i, n in enumerate(names) if n.strip().lower() == str(ch).strip().lower()]
            found = exact or loose
            if not found:
                raise ECGInputError(
                    InputErrorReason.MISSING_LEADS,
                    f"{record}: no channel named {ch!r}; channels are {list(names)}",
                )
            wanted.append(found[0])
    keep, dropped = [], []
    for i in wanted:
        if is_ecg_channel(names[i], units[i]):
            keep.append(i)
        elif channels is not None:
            raise ECGInputError(
                InputErrorReason.BAD_UNITS,
                f"{record}: channel {names[i]!r} ({units[i]}) is not an ECG lead and cannot be "
                "read as one",
            )
        else:
            voltage = units[i].strip().lower() in UNIT_SCALE_TO_MV
            dropped.append(
                {
                    "index": i,
                    "name": names[i],
                    "units": units[i],
                    # A unit-less header channel reads as mV: then the name gave it away.
                    "reason": "not an ECG signal" if voltage else "not a voltage",
                }
            )
    if not keep:
        raise ECGInputError(
            InputErrorReason.BAD_UNITS,
            f"{record}: no ECG channel (voltage unit) among {list(names)} with units {list(units)}",
        )
    return keep, dropped


def _channel_layout(header, record: Path) -> tuple[list[str], list[str], list[int]]:
    """Signal names, units and samples per frame of a record, from its header."""
    if isinstance(header, wfdb.MultiRecord):
        # Channel names live in the segments: the layout header (variable layout) or the first
        # segment (fixed layout) comes first; '~' marks a gap.
        first = next((seg for seg in header.seg_name if seg != "~"), None)
        try:
            segment = wfdb.rdheader(str(record.parent / first))
        except Exception as exc:
            raise _unreadable(record, f"cannot read segment header {first!r}", exc) from exc
        names, units = list(segment.sig_name or []), list(segment.units or [])
        spf = [1] * len(names)
    else:
        names, units = list(header.sig_name or []), list(header.units or [])
        spf = list(header.samps_per_frame or [1] * len(names))
    if not names:
        raise _unreadable(record, "header lists no signals")
    units = [u or "mV" for u in (units or ["mV"] * len(names))]
    return names, units, spf


def _read_signals(
    header, record: Path, keep: list[int], spf: list[int], sampfrom: int, stop: int | None
) -> tuple[list[np.ndarray], float, bool]:
    """Physical samples of channels ``keep``, their sampling rate, and whether frames were smoothed.

    Channels stored at k samples per frame are read at k times the frame rate when all kept
    channels share k; otherwise every channel is averaged to one value per frame.
    """
    multi_rate = len({spf[i] for i in keep}) > 1
    try:
        rec = wfdb.rdrecord(
            str(record),
            sampfrom=sampfrom,
            sampto=stop,
            channels=keep,
            # Multi-segment records only convert to one record frame-smoothed.
            smooth_frames=multi_rate or isinstance(header, wfdb.MultiRecord),
        )
    except Exception as exc:  # missing signal file, truncated file, wrong byte count, ...
        raise _unreadable(record, "cannot read signal data", exc) from exc

    if rec.p_signal is not None:
        signals = [np.asarray(rec.p_signal[:, j], dtype=np.float64) for j in range(len(keep))]
        fs_hz = float(header.fs)
    else:
        signals = [np.asarray(s, dtype=np.float64) for s in rec.e_p_signal]
        fs_hz = float(header.fs) * spf[keep[0]]
    # wfdb 4.3 raises on short files itself; a short read must never pass as a shorter recording.
    n_frames = (stop if stop is not None else rec.sig_len) - sampfrom
    expected = round(n_frames * fs_hz / float(header.fs))
    if any(len(s) != expected for s in signals):
        raise _unreadable(record, f"signal file holds fewer than the {expected} samples the header declares")
    return signals, fs_hz, multi_rate


def read_wfdb(
    record_path: str | Path,
    *,
    channels: Sequence[int | str] | None = None,
    sampfrom: int = 0,
    sampto: int | None = None,
    patient_id: str | None = None,
    device_id: str | None = None,
) -> ECG:
    """Read a WFDB record as an :class:`ECG` in millivolts.

    ``record_path``: the record with or without extension (``.hea``, ``.dat``, ``.mat``, ...).
    ``channels``: indices or names (exact, else case-insensitive) to read, in the order wanted;
    default all ECG channels. Asking for a non-voltage channel raises ``BAD_UNITS``.
    ``sampfrom``/``sampto``: the slice to read, in frames of the header's sampling frequency
    (a frame is one sample for ordinary records).
    ``patient_id``/``device_id``: default to the header's ``patient_id:``/``device_id:`` comment
    (written by :func:`write_wfdb`), else the record name.

    ``acquired_at`` is the header's base date and time (naive: WFDB has no time zone, unless a
    ``timezone: UTC`` comment says so) moved on by ``sampfrom``; ``None`` without a base date.
    ``metadata`` holds ``comments`` (header comment lines), ``header_fields`` (their
    ``Key: value`` pairs, such as ``Age``, ``Sex``, ``Dx``), ``dropped_channels`` and per-channel
    ``units_original``, ``adc_gain``, ``fmt``.

    Raises ``ECGInputError``: ``UNREADABLE`` (missing/garbled header, missing or truncated signal
    file), ``NON_FINITE`` (invalid samples in an ECG channel), ``BAD_UNITS`` (no ECG channel),
    ``MISSING_LEADS`` (unknown channel asked for), ``TOO_SHORT`` (empty slice or ``sampto``
    beyond the end).
    """
    record = resolve_record(record_path)
    if sampfrom < 0:
        raise ValueError(f"sampfrom must be >= 0, got {sampfrom}")
    try:
        header_bytes = Path(f"{record}.hea").read_bytes()
    except OSError as exc:
        raise _unreadable(record, "cannot read WFDB header", exc) from exc
    whole = None
    if sampfrom == 0 and sampto is None:
        # As wfdb decodes a header (ASCII, undecodable bytes dropped).
        whole = wfdb_fast.read_whole(record, header_bytes.decode("ascii", errors="ignore"))
    if whole is not None:
        header = whole.header
    else:
        try:
            header = wfdb.rdheader(str(record))
        except Exception as exc:  # wfdb raises many types for a bad header; callers need one.
            raise _unreadable(record, "cannot parse WFDB header", exc) from exc
    names, units, spf = _channel_layout(header, record)

    sig_len = header.sig_len
    stop = sig_len if sampto is None else sampto
    if stop is not None and stop <= sampfrom:
        raise ECGInputError(
            InputErrorReason.TOO_SHORT,
            f"{record}: empty slice sampfrom={sampfrom}, sampto={stop} (record has {sig_len} samples)",
        )
    if sig_len is not None and stop > sig_len:
        raise ECGInputError(
            InputErrorReason.TOO_SHORT,
            f"{record}: sampto={stop} is beyond the end of the record ({sig_len} samples)",
        )

    keep, dropped = _select_channels(names, units, channels, record)
    if whole is not None:
        fs_hz, multi_rate = float(header.fs), False
        samples = whole.millivolts(keep, [units[i] for i in keep])
    else:
        signals, fs_hz, multi_rate = _read_signals(header, record, keep, spf, sampfrom, stop)
        samples = rows_to_millivolts(signals, [units[i] for i in keep])

    comments = list(header.comments or [])
    fields = _header_fields(comments)
    started, raw_time = _start_datetime(header, header_bytes.decode(errors="replace"))
    if started is not None and fields.get(_TZ_FIELD, "").upper() == "UTC":
        started = started.replace(tzinfo=timezone.utc)
    acquired_at = started + timedelta(seconds=sampfrom / float(header.fs)) if started else None

    metadata = {
        "format": "wfdb",
        "record_name": record.name,
        "comments": comments,
        "header_fields": fields,
        "dropped_channels": dropped,
        "units_original": [units[i] for i in keep],
        "adc_gain": [float(header.adc_gain[i]) for i in keep] if getattr(header, "adc_gain", None) else [],
        "fmt": [header.fmt[i] for i in keep] if getattr(header, "fmt", None) else [],
        "base_time_raw": raw_time,
        "record_samples": sig_len,
        "sampfrom": sampfrom,
        "sampto": stop,
    }
    if multi_rate:
        metadata["frame_smoothed"] = True
    try:
        return ECG(
            samples=samples,
            fs_hz=fs_hz,
            lead_names=tuple(names[i] for i in keep),
            units="mV",
            patient_id=patient_id if patient_id is not None else fields.get("patient_id", record.name),
            device_id=device_id if device_id is not None else fields.get("device_id", record.name),
            acquired_at=acquired_at,
            source=str(record),
            metadata=metadata,
        )
    except ECGInputError as exc:
        # Say which file: in a batch the lead names alone do not find it.
        raise ECGInputError(exc.reason, f"{record}: {exc.detail}") from exc


def _adc_gain(lead_mv: np.ndarray) -> float:
    """Counts per mV for 16-bit storage: 1000 (1 µV steps, as PTB-XL) unless the lead would clip."""
    peak = float(np.max(np.abs(lead_mv))) if lead_mv.size else 0.0
    # 32767 leaves -32768 free: it is format 16's "invalid sample" code.
    return 1000.0 if peak * 1000.0 <= 32767 else 32767.0 / peak


def write_wfdb(ecg: ECG, directory: str | Path, record_name: str) -> Path:
    """Write ``ecg`` as a WFDB record (format 16, mV) and return the record path (no extension).

    Leads are stored at 1000 counts/mV (0.5 µV worst-case rounding) unless a lead exceeds
    ±32.7 mV, which then gets the largest gain that fits. Header comments carry
    ``metadata["comments"]`` plus ``patient_id:``/``device_id:`` lines, which :func:`read_wfdb`
    reads back; ``acquired_at`` becomes the base date/time (in UTC, with a ``timezone: UTC``
    comment, when it is time-zone aware).
    """
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", record_name):
        raise ValueError(f"WFDB record names may hold letters, digits, '_' and '-', got {record_name!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ecg = ecg.in_millivolts()

    gains = [_adc_gain(lead) for lead in ecg.samples]
    digital = np.stack(
        [np.round(lead.astype(np.float64) * g) for lead, g in zip(ecg.samples, gains)], axis=1
    ).astype(np.int16)

    kept = [
        c for c in ecg.metadata.get("comments", [])
        if c.partition(":")[0].strip() not in (*_ID_FIELDS, _TZ_FIELD)
    ]
    comments = kept + [f"patient_id: {ecg.patient_id}", f"device_id: {ecg.device_id}"]
    base_date = base_time = None
    if ecg.acquired_at is not None:
        at = ecg.acquired_at
        if at.tzinfo is not None:
            at = at.astimezone(timezone.utc).replace(tzinfo=None)
            comments.append(f"{_TZ_FIELD}: UTC")
        base_date, base_time = at.date(), at.time()

    wfdb.wrsamp(
        record_name,
        fs=ecg.fs_hz,
        units=["mV"] * ecg.n_leads,
        sig_name=list(ecg.lead_names),
        d_signal=digital,
        fmt=["16"] * ecg.n_leads,
        adc_gain=gains,
        baseline=[0] * ecg.n_leads,
        comments=comments,
        base_date=base_date,
        base_time=base_time,
        write_dir=str(directory),
    )
    return directory / record_name

