"""IEEE 11073-10101 (MDC) codes of ECG leads and voltage units, as FHIR and HL7 v2 feeds carry them.

A lead is named in two MDC families, both met in practice:

* ``MDC_ECG_ELEC_POTL_<lead>``: the electric potential of a lead (FHIR's own ECG example, IHE PCD
  monitor gateways), code ``131072 + 256 + n``: ``MDC_ECG_ELEC_POTL_I`` = 131329;
* ``MDC_ECG_LEAD_<lead>``: the lead itself (HL7 aECG, DICOM-to-MDC mappings), code ``131072 + n``:
  ``MDC_ECG_LEAD_I`` = 131073.

``n`` is the lead's term number in the MDC ECG lead table (partition 2, SCADA): I = 1, II = 2,
V1..V6 = 3..8, III = 61, aVR = 62, aVL = 63, aVF = 64. 131072 is partition 2 shifted by 16 bits.

Example::

    mdc_lead(131329), mdc_lead("MDC_ECG_LEAD_AVR"), mdc_lead("131389")   # 'I', 'aVR', 'III'
"""

from __future__ import annotations

__all__ = ["MDC_LEAD_TERMS", "mdc_lead", "mdc_code", "mdc_refid", "mdc_voltage_unit", "MDC_SYSTEM"]

# The FHIR code system URI of MDC.
MDC_SYSTEM = "urn:oid:2.16.840.1.113883.6.24"

_PARTITION_SCADA = 2 << 16
_ELEC_POTL_OFFSET = 256

MDC_LEAD_TERMS: dict[str, int] = {
    "I": 1, "II": 2, "V1": 3, "V2": 4, "V3": 5, "V4": 6, "V5": 7, "V6": 8,
    "III": 61, "aVR": 62, "aVL": 63, "aVF": 64,
}

_BY_CODE: dict[int, str] = {}
for _lead, _term in MDC_LEAD_TERMS.items():
    _BY_CODE[_PARTITION_SCADA + _term] = _lead
    _BY_CODE[_PARTITION_SCADA + _ELEC_POTL_OFFSET + _term] = _lead
_BY_REFID: dict[str, str] = {}
for _lead in MDC_LEAD_TERMS:
    _BY_REFID[f"MDC_ECG_LEAD_{_lead.upper()}"] = _lead
    _BY_REFID[f"MDC_ECG_ELEC_POTL_{_lead.upper()}"] = _lead

# Voltage dimensions by reference id; the numeric codes are not needed: feeds send the refid.
_VOLTAGE_REFIDS = {"MDC_DIM_MILLI_VOLT": "mV", "MDC_DIM_MICRO_VOLT": "uV", "MDC_DIM_X_VOLT": "V"}


def mdc_lead(code: str | int) -> str | None:
    """The canonical lead name of an MDC code (number or reference id), else ``None``."""
    text = str(code).strip()
    if text.isdigit():
        return _BY_CODE.get(int(text))
    return _BY_REFID.get(text.upper())


def mdc_code(lead: str) -> int:
    """The ``MDC_ECG_ELEC_POTL_<lead>`` code of a canonical lead name (what writers here emit)."""
    return _PARTITION_SCADA + _ELEC_POTL_OFFSET + MDC_LEAD_TERMS[lead]


def mdc_refid(lead: str) -> str:
    """``MDC_ECG_ELEC_POTL_<LEAD>`` for a canonical lead name."""
    return f"MDC_ECG_ELEC_POTL_{lead.upper()}"


def mdc_voltage_unit(refid: str) -> str | None:
    """``mV``/``uV``/``V`` for an MDC voltage dimension reference id, else ``None``."""
    return _VOLTAGE_REFIDS.get(str(refid).strip().upper())
