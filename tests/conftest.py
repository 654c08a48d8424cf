"""Shared test fixtures: where the real recordings in tests/data/ecg are.

Record fixtures are WFDB record paths without extension (the form ``wfdb`` and
``hfrisk.model.readers.wfdb_io.read_wfdb`` take); ``dicom_ecg_path`` is pydicom's 12-lead ECG file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ECG_DATA_DIR = Path(__file__).parent / "data" / "ecg"


@pytest.fixture(scope="session")
def ecg_data_dir() -> Path:
    """tests/data/ecg: PTB-XL (ecg_id 1-24 at 100 and 500 Hz), cinc2021, wfdb-samples."""
    return ECG_DATA_DIR


@pytest.fixture(scope="session")
def ptbxl_record_lr() -> Path:
    """PTB-XL ecg_id 1 at 100 Hz: 12 leads, 1000 samples, lead names I ... AVR ... V6."""
    return ECG_DATA_DIR / "ptbxl" / "records100" / "00000" / "00001_lr"


@pytest.fixture(scope="session")
def ptbxl_record_hr() -> Path:
    """PTB-XL ecg_id 1 at 500 Hz: the same ECG as ``ptbxl_record_lr``, 5000 samples."""
    return ECG_DATA_DIR / "ptbxl" / "records500" / "00000" / "00001_hr"


@pytest.fixture(scope="session")
def cinc_record() -> Path:
    """CinC 2021 HR06000: 12 leads at 500 Hz in a .mat file, units written 'mv', #Dx comments."""
    return ECG_DATA_DIR / "cinc2021" / "HR06000"


@pytest.fixture(scope="session")
def mitbih_record() -> Path:
    """MIT-BIH record 100: MLII and V5 at 360 Hz, 30 min, format 212, beat annotations (.atr)."""
    return ECG_DATA_DIR / "wfdb-samples" / "100"


@pytest.fixture(scope="session")
def ptb_15lead_record() -> Path:
    """PTB Diagnostic s0010_re: 12 leads + Frank vx/vy/vz at 1000 Hz, lower-case lead names."""
    return ECG_DATA_DIR / "wfdb-samples" / "s0010_re"


@pytest.fixture(scope="session")
def dicom_ecg_path() -> Path:
    """pydicom's waveform_ecg.dcm: 12-lead rhythm strip (10 s, 1000 Hz) and a 1.2-s median beat."""
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("waveform_ecg.dcm"))


@pytest.fixture(scope="session")
def exported_model_dir(tmp_path_factory) -> Path:
    """A seeded, untrained HFRiskNet exported to ONNX with its card: ``<dir>/model.onnx`` and
    ``<dir>/model_card.json``. Its scores are deterministic but meaningless."""
    import torch

    from hfrisk.model.contract.card import default_card
    from hfrisk.model.network.hfrisk_net import HFRiskNet
    from hfrisk.model.network.onnx_export import export_onnx

    folder = tmp_path_factory.mktemp("exported-model")
    torch.manual_seed(0)
    export_onnx(HFRiskNet.from_card(default_card()).eval(), folder / "model.onnx", default_card())
    return folder
