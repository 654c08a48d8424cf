"""Readers that turn recordings (WFDB, DICOM) into the canonical ECG type."""

from hfrisk.model.readers.wfdb_io import (
    read_wfdb,
    write_wfdb,
    resolve_record,
    is_ecg_channel,
    NON_ECG_SIGNALS,
    WFDB_EXTENSIONS,
)
from hfrisk.model.readers.dicom_io import (
    read_dicom,
    clean_lead_label,
    is_dicom_file,
)
from hfrisk.model.readers.dispatch import (
    read_ecg,
    iter_records,
    DICOM_EXTENSIONS,
)

__all__ = [
    "read_wfdb",
    "write_wfdb",
    "resolve_record",
    "is_ecg_channel",
    "NON_ECG_SIGNALS",
    "WFDB_EXTENSIONS",
    "read_dicom",
    "clean_lead_label",
    "is_dicom_file",
    "read_ecg",
    "iter_records",
    "DICOM_EXTENSIONS",
]
