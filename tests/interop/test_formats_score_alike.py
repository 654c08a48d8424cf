"""One PTB-XL recording sent as WFDB, EDF, FHIR and HL7 gets the same model input and score: the
formats differ only by their quantisation, far below what the front end and the model resolve."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from hfrisk.model.contract.card import default_card
from hfrisk.model.frontend import prepare
from hfrisk.model.readers.dispatch import read_ecg
from hfrisk.model.readers.edf_io import write_edf
from hfrisk.model.readers.fhir_io import ecg_to_observation
from hfrisk.model.readers.hl7_io import ecg_to_oru_r01


def test_every_format_scores_as_the_wfdb_original(tmp_path, ptbxl_record_hr, exported_model_dir):
    original = read_ecg(ptbxl_record_hr)
    (tmp_path / "ecg.fhir.json").write_text(ecg_to_observation(original).model_dump_json())
    (tmp_path / "ecg.hl7").write_text(str(ecg_to_oru_r01(original)))
    paths = {"wfdb": ptbxl_record_hr, "edf": write_edf(original, tmp_path / "ecg.edf"),
             "fhir": tmp_path / "ecg.fhir.json", "hl7": tmp_path / "ecg.hl7"}
    card = default_card()
    session = ort.InferenceSession(str(exported_model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    inputs, risks = {}, {}
    for name, path in paths.items():
        item = prepare(read_ecg(path), card)
        assert item.quality.fit_to_score, name
        inputs[name] = item.x
        (risk,), = session.run(["log_risk"], {card.input.name: item.x[None].astype(np.float32)})
        risks[name] = float(risk[0])
    for name in ("edf", "fhir", "hl7"):
        # z-scored median beats: a sub-µV difference in the samples is a tiny one here.
        np.testing.assert_allclose(inputs[name], inputs["wfdb"], atol=1e-3)
        assert risks[name] == pytest.approx(risks["wfdb"], abs=1e-3), name
