"""Readers that turn recordings and messages into the canonical ECG type: WFDB, DICOM, EDF/EDF+,
FHIR R4 Observations with SampledData and HL7 v2 ORU^R01 waveform messages (docs/interop.md)."""

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
from hfrisk.model.readers.edf_io import read_edf, write_edf, EDF_EXTENSIONS
from hfrisk.model.readers.fhir_io import (
    read_fhir,
    fhir_observations,
    observation_to_ecg,
    ecg_to_observation,
)
from hfrisk.model.readers.hl7_io import (
    read_hl7,
    parse_oru,
    oru_to_ecg,
    ecg_to_oru_r01,
    HL7MessageError,
    ParsedORU,
)
from hfrisk.model.readers.mdc_codes import mdc_lead, mdc_code
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
    "read_edf",
    "write_edf",
    "EDF_EXTENSIONS",
    "read_fhir",
    "fhir_observations",
    "observation_to_ecg",
    "ecg_to_observation",
    "read_hl7",
    "parse_oru",
    "oru_to_ecg",
    "ecg_to_oru_r01",
    "HL7MessageError",
    "ParsedORU",
    "mdc_lead",
    "mdc_code",
    "read_ecg",
    "iter_records",
    "DICOM_EXTENSIONS",
]
