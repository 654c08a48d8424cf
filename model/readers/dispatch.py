"""One entry point for ECG files of any supported format, and record discovery for batches.

``read_ecg`` picks the reader from the extension (WFDB, DICOM, EDF/EDF+, FHIR R4 JSON, HL7 v2),
else from the content (the DICOM ``DICM`` magic, or a WFDB header next to an extension-less record
path). ``iter_records`` walks folders and yields one path per record: a WFDB record's ``.hea``
file (its signal files are not records of their own), or a DICOM, EDF, FHIR or HL7 file.

Example::

    for path in iter_records("tests/data/ecg/cinc2021"):
        ecg = read_ecg(path)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from hfrisk.model.readers.dicom_io import is_dicom_file, read_dicom
from hfrisk.model.contract.ecg import ECG
from hfrisk.model.contract.errors import ECGInputError, InputErrorReason
from hfrisk.model.readers.edf_io import EDF_EXTENSIONS, read_edf
from hfrisk.model.readers.fhir_io import read_fhir
from hfrisk.model.readers.hl7_io import HL7_EXTENSIONS, read_hl7
from hfrisk.model.readers.wfdb_io import WFDB_EXTENSIONS, read_wfdb

__all__ = ["read_ecg", "iter_records", "record_paths", "DICOM_EXTENSIONS", "FHIR_RECORD_SUFFIXES"]

DICOM_EXTENSIONS = frozenset({".dcm", ".dicom"})
# A folder holds many .json files that are not ECGs (model cards, reports): there a FHIR record
# must say so in its name; a .json file named on its own is read as FHIR.
FHIR_RECORD_SUFFIXES = (".fhir", ".fhir.json")
# Files that are never records themselves: skipped without opening them.
_NOT_RECORDS = WFDB_EXTENSIONS - {".hea"} | {".csv", ".txt", ".md", ".json", ".tsv", ".gz", ".zip", ".py"}
_WFDB_SIGNALS = WFDB_EXTENSIONS - {".hea"}
_HEAD_BYTES = 4096


def read_ecg(path: str | Path, **kwargs) -> ECG:
    """Read a WFDB record, a DICOM ECG, an EDF/EDF+/BDF file, a FHIR R4 ECG Observation (or a
    Bundle of one) or an HL7 v2 ORU^R01 waveform message as an :class:`ECG` in millivolts.

    The format comes from the extension (``.hea``/``.dat``/``.mat``..., ``.dcm``, ``.edf``/
    ``.bdf``, ``.json``/``.fhir``, ``.hl7``/``.oru``), else from the content (DICOM magic, a
    WFDB header beside an extension-less record path). ``kwargs`` go to the reader:
    :func:`~hfrisk.model.readers.wfdb_io.read_wfdb` (``channels``, ``sampfrom``, ``sampto``,
    ``patient_id``, ``device_id``), :func:`~hfrisk.model.readers.dicom_io.read_dicom`
    (``waveform``, ...), :func:`~hfrisk.model.readers.fhir_io.read_fhir` (``index``, ``units``,
    ...); all take ``patient_id`` and ``device_id``.
    Raises ``ECGInputError(UNREADABLE)`` for a file that is none of them.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in DICOM_EXTENSIONS:
        return read_dicom(path, **kwargs)
    if suffix in EDF_EXTENSIONS:
        return read_edf(path, **kwargs)
    if suffix in (".json", ".fhir"):
        if not path.is_file():
            raise ECGInputError(InputErrorReason.UNREADABLE, f"{path}: no such file")
        return read_fhir(path, **kwargs)
    if suffix in HL7_EXTENSIONS:
        if not path.is_file():
            raise ECGInputError(InputErrorReason.UNREADABLE, f"{path}: no such file")
        return read_hl7(path, **kwargs)
    if suffix in WFDB_EXTENSIONS:
        return read_wfdb(path, **kwargs)
    if path.is_file() and is_dicom_file(path):
        return read_dicom(path, **kwargs)
    if Path(f"{path}.hea").is_file():
        return read_wfdb(path, **kwargs)
    if not path.exists():
        raise ECGInputError(InputErrorReason.UNREADABLE, f"{path}: no such file or WFDB record")
    raise ECGInputError(
        InputErrorReason.UNREADABLE,
        f"{path}: not a recognised ECG file; expected a WFDB record (.hea with .dat/.mat), DICOM, "
        "EDF (.edf/.bdf), FHIR (.json/.fhir) or HL7 v2 (.hl7/.oru)",
    )


def _segment_headers(header: str) -> set[str]:
    """Segment record names listed by a multi-segment WFDB header; empty for ordinary ones."""
    # Every header of a folder is looked at here, and nearly all are ordinary: their first bytes,
    # read without a Python file object (a third of the CPU), hold the record line that says so.
    try:
        fd = os.open(header, os.O_RDONLY)
        try:
            head = os.read(fd, _HEAD_BYTES)
        finally:
            os.close(fd)
        # Most headers start with their record line: its first token decides, without decoding
        # and splitting the rest of the header (half the CPU a header here).
        end = head.find(b"\n")
        first = head[:end].split(None, 1) if end > 0 and b"#" not in head[:end] else None
        if first and b"/" not in first[0]:
            return set()
        lines = head.decode(errors="replace").splitlines()
        more = len(head) == _HEAD_BYTES
        if more:
            lines.pop()  # perhaps cut short: decide on whole lines only
        record_line = next(_header_lines(lines), None)
        # A multi-segment record line reads "name/n_segments n_signals fs ...".
        if record_line is not None and "/" not in record_line[0]:
            return set()
        if more:
            lines = Path(header).read_text(errors="replace").splitlines()
    except OSError:
        return set()
    tokens = list(_header_lines(lines))
    if not tokens or "/" not in tokens[0][0]:
        return set()
    return {line[0] for line in tokens[1:] if line[0] != "~"}


def _header_lines(lines: list[str]) -> Iterator[list[str]]:
    """The tokens of each line of a header that holds any beside its comments."""
    return (tokens for tokens in (line.split("#", 1)[0].split() for line in lines) if tokens)


def _records_in(folder: Path) -> Iterator[str]:
    """The records under ``folder`` in the order of their paths' parts, a folder at a time (its
    files and sub-folders by name, each sub-folder's records at its place): the first are yielded
    before the last folder is listed. Paths are written as ``str(folder / ...)`` writes them,
    without making a ``Path`` of each (a third of the CPU of listing)."""
    root = str(folder)
    return _records_under(root, "" if root == "." else root)


def _records_under(where: str, prefix: str) -> Iterator[str]:
    # os.scandir knows a plain file's type without a stat: a fraction of rglob's CPU. Links to files
    # are followed, linked folders are not descended into, unreadable folders are skipped, as rglob.
    try:
        with os.scandir(where) as found:
            entries = sorted(found, key=lambda entry: entry.name)
    except OSError:
        return
    order: list[tuple[str, str | None]] = []  # (path, the folder to descend into, or None for a record)
    headers = []
    for entry in entries:
        path = os.path.join(prefix, entry.name) if prefix else entry.name
        if entry.is_dir(follow_symlinks=False):
            order.append((path, entry.path))
            continue
        name = entry.name
        suffix = os.path.splitext(name)[1].lower()
        # Signal files (half of a WFDB folder) are left out by name, before anything else.
        if suffix in _WFDB_SIGNALS or not entry.is_file():
            continue
        if suffix == ".hea":
            headers.append(path)
        elif not (suffix in EDF_EXTENSIONS or suffix in HL7_EXTENSIONS or name.lower().endswith(FHIR_RECORD_SUFFIXES)
                  or suffix in DICOM_EXTENSIONS or (suffix not in _NOT_RECORDS and is_dicom_file(Path(path)))):
            continue
        order.append((path, None))
    # Segments of a multi-segment record are read through its master header, not on their own.
    # WFDB names them as records (letters, digits, underscores): beside the master, in its folder.
    segments = {
        os.path.join(os.path.dirname(header), os.path.splitext(name)[0] + ".hea")
        for header in headers
        for name in _segment_headers(header)
    }
    for path, folder in order:
        if folder is not None:
            yield from _records_under(folder, path)
        elif path not in segments:
            yield path


def record_paths(folder_or_list: str | Path | Iterable[str | Path]) -> Iterator[str]:
    """:func:`iter_records` as strings (``str`` of each path it yields), for long lists: a ``Path``
    a record was a third of the CPU of listing a folder."""
    items = [folder_or_list] if isinstance(folder_or_list, (str, Path)) else folder_or_list
    for item in items:
        path = Path(item)
        if path.is_dir():
            yield from _records_in(path)
        elif Path(f"{path}.hea").is_file():
            yield f"{path}.hea"
        elif path.suffix.lower() in WFDB_EXTENSIONS and path.with_suffix(".hea").is_file():
            yield str(path.with_suffix(".hea"))
        else:
            yield str(path)


def iter_records(folder_or_list: str | Path | Iterable[str | Path]) -> Iterator[Path]:
    """Yield one path per ECG record, ready for :func:`read_ecg`, in sorted order per folder.

    A folder is searched recursively: WFDB records are found by their ``.hea`` files (segments
    of a multi-segment record are left to its master header), DICOM files by their ``.dcm``
    extension or ``DICM`` magic, EDF by ``.edf``/``.bdf``/``.rec``, HL7 by ``.hl7``/``.oru``
    and FHIR by ``.fhir``/``.fhir.json`` (other ``.json`` files in a folder are not records). A list may mix folders and files; a listed WFDB data file or
    extension-less record path is turned into its ``.hea`` path, and any other listed path is
    yielded as given, so that :func:`read_ecg` reports what is wrong with it.
    """
    return (Path(path) for path in record_paths(folder_or_list))
