"""The format-16 fast path of the WFDB reader: headers parsed with wfdb's own grammar, samples read
with one ``np.fromfile``.

wfdb spends ~3 ms of a 12-lead read in its header parser's per-field pandas lookups, more than all of
preprocessing; for PTB-XL-like records this reads the same ``wfdb.Record`` bit for bit in a tenth of
the time, and hands anything unusual back to ``wfdb.rdrecord``
(``tests/model/test_wfdb_fast_path.py`` holds it to wfdb on every record in ``tests/data``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
import wfdb

from hfrisk.model.contract.ecg import scale_to_mv, rows_to_millivolts

try:  # wfdb's header grammar and field specs
    from wfdb.io import _header as wfdb_header_specs
    from wfdb.io import header as wfdb_header
except ImportError:  # pragma: no cover - a wfdb that moved them: wfdb.rdrecord reads every record
    wfdb_header_specs = wfdb_header = None

__all__ = ["parse_header", "read_whole", "read_whole_fast", "read_ordinary", "digital_to_millivolts", "Whole"]


@lru_cache(maxsize=2)
def _specs(table: str) -> dict[str, tuple[tuple[type, ...], object]]:
    """wfdb's own types and read defaults of the header fields (``SIGNAL_SPECS`` or
    ``RECORD_SPECS``), looked up once: wfdb looks each one up in a pandas table for every field
    of every channel, which is most of a read."""
    specs = getattr(wfdb_header_specs, table)
    return {f: (specs.loc[f, "allowed_types"], specs.loc[f, "read_default"]) for f in specs.index}


def _parse_record_line(line: str) -> dict[str, object] | None:
    """wfdb's record-line parsing (``wfdb.io._header._parse_record_line``) with the specs looked
    up once; ``None`` on a line wfdb would refuse."""
    match = wfdb_header.rx_record.match(line)
    if match is None:
        return None
    fields: dict[str, object] = match.groupdict()
    for field, (types, default) in _specs("RECORD_SPECS").items():
        value = fields[field]
        if value == "":
            fields[field] = default
        elif types == wfdb_header_specs.int_types:
            fields[field] = int(value)
        elif types == wfdb_header_specs.float_types:
            value = float(value)
            if field == "fs" and round(value, 8) == float(int(value)):
                value = int(value)  # wfdb: a whole rate is an int
            fields[field] = value
        elif field == "base_time":
            fields[field] = wfdb_header.wfdb_strptime(value)
        elif field == "base_date":
            fields[field] = datetime.strptime(value, "%d/%m/%Y").date()
    if fields["base_date"] and fields["base_time"]:
        fields["base_datetime"] = datetime.combine(fields["base_date"], fields["base_time"])
    return fields


def _parse_signal_lines(lines: Sequence[str]) -> dict[str, list] | None:
    """wfdb's signal-line parsing (``wfdb.io._header._parse_signal_lines``), same grammar, types
    and defaults, with the field specs looked up once; ``None`` on a line wfdb would refuse."""
    specs = _specs("SIGNAL_SPECS")
    fields: dict[str, list] = {f: [None] * len(lines) for f in specs}
    for ch, line in enumerate(lines):
        match = wfdb_header.rx_signal.match(line)
        if match is None:
            return None
        raw = match.groupdict()
        for field, (types, default) in specs.items():
            value = raw[field]
            if value == "":
                value = default
                # wfdb: a missing baseline is the ADC zero when there is one.
                if field == "baseline" and raw["adc_zero"] != "":
                    value = int(raw["adc_zero"])
            elif types is wfdb_header_specs.int_types:
                value = int(value)
            elif types is wfdb_header_specs.float_types:
                value = float(value)
                if field == "adc_gain" and value == 0:
                    value = 200.0  # wfdb: a gain of 0 means 200
            fields[field][ch] = value
    return fields


def parse_header(text: str) -> tuple[dict, dict | None, list[str]] | None:
    """``(record fields, signal fields, comment lines)`` of a header as wfdb parses it; signal
    fields ``None`` for a multi-segment header. ``None`` when this parser cannot tell (a header wfdb
    would refuse, or a wfdb without the modules it borrows): wfdb then reads it and names the problem.
    """
    if wfdb_header is None:
        return None
    try:
        header_lines, comment_lines = wfdb_header.parse_header_content(text)
        record_fields = _parse_record_line(header_lines[0]) if header_lines else None
        if record_fields is None:
            return None
        if record_fields["n_seg"] is not None:
            return record_fields, None, comment_lines
        fields = _parse_signal_lines(header_lines[1:])
    except Exception:
        return None
    return None if fields is None else (record_fields, fields, comment_lines)


def _read_int16(path: Path, count: int) -> np.ndarray | None:
    """Exactly ``count`` little-endian int16 values, the whole file; ``None`` when it holds more or
    fewer bytes. One open and reads into the array: ``stat`` then ``np.fromfile`` took about twice as long."""
    samples = np.empty(count + 1, dtype="<i2")  # one more: a longer file is not what the header says
    view, got = memoryview(samples).cast("B"), 0
    with open(path, "rb", buffering=0) as file:
        while got < len(view):
            n = file.readinto(view[got:])
            if not n:
                break
            got += n
    return samples[:count] if got == 2 * count else None


def read_ordinary(record: Path, parsed: tuple[dict, dict | None, list[str]] | None = None,
                  ) -> tuple[wfdb.Record, np.ndarray] | None:
    """An ordinary format-16 record (PTB-XL's, and what :func:`write_wfdb` writes): its header as
    the ``wfdb.Record`` that ``wfdb.rdrecord(record, m2s=False)`` reads, without samples, and its
    digital samples, ``(sig_len, n_sig)`` int16; ``None`` for anything else (other formats, several
    files or segments, offsets, a file whose size is not what the header says), which wfdb then
    reads. ``parsed``: :func:`parse_header` of its header, if the caller has it.
    """
    if parsed is None:
        try:
            parsed = parse_header(Path(f"{record}.hea").read_text(encoding="ascii", errors="ignore"))
        except OSError:
            return None
    if parsed is None or parsed[1] is None:
        return None
    record_fields, fields, comment_lines = parsed
    n_sig, sig_len = len(fields["fmt"]), record_fields["sig_len"]
    files = set(fields["file_name"])
    ordinary = (
        record_fields["n_sig"] == n_sig
        and sig_len
        and len(files) == 1
        and all(f == "16" for f in fields["fmt"])
        and all(k == 1 for k in fields["samps_per_frame"])
        and all(not k for k in fields["skew"])
        and all(not k for k in fields["byte_offset"])
    )
    if not ordinary:
        return None
    try:
        digital = _read_int16(record.parent / files.pop(), n_sig * sig_len)
    except OSError:
        return None
    if digital is None:
        return None
    digital = digital.reshape(sig_len, n_sig)
    rec = wfdb.Record()
    for field, value in fields.items():
        setattr(rec, field, value)
    for field, value in record_fields.items():
        if field != "n_seg":
            setattr(rec, field, value)
    rec.comments = [line.strip(" \t#") for line in comment_lines]
    return rec, digital


def read_whole_fast(record: Path, parsed: tuple[dict, dict | None, list[str]] | None = None) -> wfdb.Record | None:
    """:func:`read_ordinary`'s record with its physical samples, as ``wfdb.rdrecord(record,
    m2s=False)`` reads it, bit for bit, in a tenth of the time; ``None`` for what that declines.

    wfdb spends ~3 ms of a 12-lead read in its header parser's per-field pandas lookups, more than
    all of preprocessing; ``tests/model/test_wfdb_fast_path.py`` holds this path to wfdb on every
    record in ``tests/data``.
    """
    ordinary = read_ordinary(record, parsed)
    if ordinary is None:
        return None
    rec, digital = ordinary
    # wfdb's ``dac``: float64, minus baseline, over gain; format 16's -32768 marks a missing sample.
    physical = digital.astype(np.float64)
    np.subtract(physical, rec.baseline, physical)
    np.divide(physical, rec.adc_gain, physical)
    physical[digital == -32768] = np.nan
    rec.p_signal = physical
    return rec


def _columns(samples: np.ndarray, keep: Sequence[int]) -> np.ndarray:
    """Columns ``keep`` of ``(sig_len, n_sig)`` samples as rows: a view of the transpose when they
    are every column in order (the usual case), a copy of those columns otherwise."""
    keep = list(keep)
    return samples.T if keep == list(range(samples.shape[1])) else samples[:, keep].T


def digital_to_millivolts(digital: np.ndarray, baseline: Sequence[int], adc_gain: Sequence[float],
                          units: Sequence[str], keep: Sequence[int]) -> np.ndarray:
    """Format-16 samples ``(sig_len, n_sig)`` to millivolts, ``(len(keep), sig_len)`` float32: the
    columns ``keep`` of what :func:`read_whole_fast` reads, through
    :func:`~hfrisk.model.contract.ecg.rows_to_millivolts`, bit for bit, in one pass instead of four.

    The float64 detour is skipped when it cannot change a bit: with integer samples and baselines
    and every gain a float32 value, ``sample - baseline`` is exact in float32 and a float32
    division rounds as the float64 one rounded again to float32 does (a quotient computed with at
    least 2 x 24 + 2 bits and rounded to 24 is the correctly rounded one). Other gains go the
    float64 way. ``tests/model/test_wfdb_fast_path.py`` checks both against the slow path on every bit.
    """
    # Lead-major int16 first: numpy transposes 2-byte items in about half the time of 4-byte ones.
    columns = np.ascontiguousarray(_columns(digital, keep))
    base = [baseline[i] for i in keep]
    gain = [adc_gain[i] for i in keep]
    gain32 = np.array(gain, dtype=np.float32)
    out = np.empty(columns.shape, dtype=np.float32)
    # Decided on the lists: numpy's reductions over 12 values cost more than the loops.
    if all(float(b).is_integer() and abs(b) < 2**23 for b in base) and gain32.tolist() == gain:
        if any(base):
            np.subtract(columns, np.array(base, dtype=np.float32)[:, None], out=out)
            np.divide(out, gain32[:, None], out=out)
        else:  # x - 0 is x: PTB-XL's baselines are all 0
            np.divide(columns, gain32[:, None], out=out)
    else:
        physical = np.subtract(columns, np.array(base, dtype=np.float64)[:, None])
        np.divide(physical, np.array(gain, dtype=np.float64)[:, None], out=physical)
        out[...] = physical
    scales = [scale_to_mv(u) for u in units]
    if any(k != 1.0 for k in scales):
        np.multiply(out, np.array(scales, dtype=np.float32)[:, None], out=out)
    if columns.size and columns.min() == -32768:  # a missing sample in a lead it keeps
        out[columns == -32768] = np.nan
    return out


@dataclass(frozen=True)
class Whole:
    """A whole ordinary record read once: ``header`` has every header field (and ``p_signal`` when
    wfdb read the samples); ``digital`` holds the format-16 samples when the fast path read them."""

    header: wfdb.Record
    digital: np.ndarray | None = None

    def millivolts(self, keep: Sequence[int], units: Sequence[str]) -> np.ndarray:
        """Channels ``keep`` in mV, ``(len(keep), sig_len)`` float32, ``units`` theirs."""
        if self.digital is not None:
            return digital_to_millivolts(self.digital, self.header.baseline, self.header.adc_gain, units, keep)
        return rows_to_millivolts(_columns(self.header.p_signal, keep), units)


def read_whole(record: Path, header_text: str) -> Whole | None:
    """The whole record, header and samples parsed once, when it is an ordinary one (one segment,
    one sample per frame, every sample present); ``None`` sends the caller to the general path.

    wfdb parses a 12-lead header in ~3 ms (pandas lookups per field), and ``rdheader`` followed by
    ``rdrecord`` parses it twice: for screening that was more than the whole preprocessing.
    """
    parsed = parse_header(header_text)
    if parsed is not None:
        fields = parsed[1]
        if fields is None or any(k != 1 for k in fields["samps_per_frame"]):
            return None  # several segments or samples per frame: the general path reads them once
        ordinary = read_ordinary(record, parsed)
        if ordinary is not None:
            return Whole(*ordinary)
    try:
        rec = wfdb.rdrecord(str(record), m2s=False)
    except Exception:  # let the general path find and name the problem
        return None
    if isinstance(rec, wfdb.MultiRecord) or rec.p_signal is None:
        return None
    if any(k != 1 for k in (rec.samps_per_frame or [1])) or rec.p_signal.shape[0] != rec.sig_len:
        return None
    return Whole(rec)
