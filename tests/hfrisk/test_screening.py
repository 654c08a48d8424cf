import os
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from hfrisk.cli import app
from hfrisk.model.frontend.preprocessing import prepare
from hfrisk.model.readers.dispatch import read_ecg
from hfrisk.serving.scorers import OnnxScorer, find_model_version
from hfrisk.screening import SCORES_FILENAME, screen


@pytest.fixture(scope="module")
def scorer(exported_model_dir):
    return OnnxScorer.from_model_dir(exported_model_dir, threads=1)


@pytest.fixture()
def ward(tmp_path, ecg_data_dir):
    """Six real PTB-XL records, one truncated record and one flat-lined copy."""
    folder = tmp_path / "ward"
    folder.mkdir()
    src = ecg_data_dir / "ptbxl" / "records500" / "00000"
    for i in range(1, 7):
        for ext in ("hea", "dat"):
            shutil.copy(src / f"{i:05d}_hr.{ext}", folder / f"{i:05d}_hr.{ext}")
    shutil.copy(src / "00007_hr.hea", folder / "broken.hea")
    (folder / "broken.hea").write_text((src / "00007_hr.hea").read_text().replace("00007_hr", "broken"))
    (folder / "broken.dat").write_bytes((src / "00007_hr.dat").read_bytes()[:1000])
    flat = (src / "00008_hr.hea").read_text().replace("00008_hr", "flat")
    (folder / "flat.hea").write_text(flat)
    (folder / "flat.dat").write_bytes(bytes(len((src / "00008_hr.dat").read_bytes())))
    return folder


def test_find_model_version_prefers_newest(tmp_path, exported_model_dir):
    for version in ("1", "2", "10"):
        (tmp_path / "hfrisk" / version).mkdir(parents=True)
        shutil.copy(exported_model_dir / "model.onnx", tmp_path / "hfrisk" / version / "model.onnx")
    assert find_model_version(tmp_path).name == "10"
    with pytest.raises(FileNotFoundError):
        find_model_version(tmp_path / "nothing")


def test_screen_scores_every_record_with_stream_preprocessing(ward, tmp_path, scorer):
    frame = screen([ward], scorer, tmp_path / "out", threshold=0.0, batch_size=4, progress=False)
    by_name = {r.split("/")[-1]: row for r, row in zip(frame["record"], frame.to_dict("records"))}
    assert len(frame) == 8
    assert by_name["broken.hea"]["status"] == "refused" and "unreadable" in by_name["broken.hea"]["reason"]
    assert by_name["flat.hea"]["status"] == "low_quality" and "flat_line" in by_name["flat.hea"]["reason"]
    assert np.isnan(by_name["flat.hea"]["log_risk"])
    scored = frame[frame["status"] == "scored"]
    assert len(scored) == 6
    # Same numbers as preprocessing + the model called directly: no screening-specific path.
    path = ward / "00003_hr.hea"
    expected = scorer.score(prepare(read_ecg(path), scorer.card).x[None])["log_risk"][0, 0]
    assert by_name["00003_hr.hea"]["log_risk"] == pytest.approx(float(expected), abs=1e-5)


def test_lead_attention_is_the_one_json_wire_form_and_the_summary_reads_it_back(ward, tmp_path, scorer):
    from hfrisk.model.contract.attention_weights import decode_lead_weights, encode_lead_weights
    from hfrisk.screening import write_summary

    frame = screen([ward], scorer, tmp_path / "out", threshold=0.0, batch_size=4, progress=False, workers=0)
    scored = frame[frame["status"] == "scored"]
    path = ward / "00003_hr.hea"
    weights = scorer.score(prepare(read_ecg(path), scorer.card).x[None])["lead_attention"][0]
    row = scored[scored["record"] == str(path)].iloc[0]
    expected = decode_lead_weights(encode_lead_weights(scorer.card.input.leads, weights))
    assert decode_lead_weights(row["lead_attention"]) == pytest.approx(expected, abs=1e-5)  # batched vs alone
    for text, top in zip(scored["lead_attention"], scored["top_lead"]):
        by_lead = decode_lead_weights(text)
        assert list(by_lead) == list(scorer.card.input.leads)
        assert max(by_lead, key=by_lead.get) == top
    assert frame.loc[frame["status"] != "scored", "lead_attention"].isna().all()
    picture = write_summary(frame, tmp_path / "summary.png", leads=scorer.card.input.leads)
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (scored["flagged"] == (scored["log_risk"] >= 0.0)).all()
    assert np.allclose(scored["hazard_ratio"], np.exp(scored["log_risk"]))


def test_screen_resumes_without_rescoring(ward, tmp_path, scorer):
    out = tmp_path / "out"
    screen([ward / "00001_hr.hea", ward / "00002_hr.hea"], scorer, out, threshold=0.0, progress=False)
    calls = []

    class Counting:
        card = scorer.card

        def score(self, x):
            calls.append(len(x))
            return scorer.score(x)

    frame = screen([ward], Counting(), out, threshold=0.0, progress=False)
    assert len(frame) == 8 and frame["record"].is_unique
    assert sum(calls) == 4  # six scoreable records, two already done
    assert pd.read_csv(out / SCORES_FILENAME)["record"].is_unique


def test_cli_screen_and_inspect(ward, tmp_path, exported_model_dir):
    runner = CliRunner()
    result = runner.invoke(app, ["screen", str(ward), "--in-process", "--model", str(exported_model_dir),
                                 "--out", str(tmp_path / "cli"), "--threshold", "0"])
    assert result.exit_code == 0, result.output
    assert "8 recordings: 6 scored, 1 not fit to score, 1 refused" in " ".join(result.output.split())
    assert (tmp_path / "cli" / "scores.parquet").is_file()

    missing = runner.invoke(app, ["screen", str(ward), "--in-process", "--model", str(tmp_path / "none")])
    assert missing.exit_code == 2

    result = runner.invoke(app, ["inspect", str(ward / "00001_hr")])
    assert result.exit_code == 0, result.output
    assert "fit to score" in result.output and "aVR" in result.output
    result = runner.invoke(app, ["inspect", str(ward / "broken")])
    assert result.exit_code == 2 and "unreadable" in result.output


def test_parallel_screening_writes_the_serial_rows(ward, tmp_path, scorer, ecg_data_dir, monkeypatch):
    sources = [ecg_data_dir / "ptbxl" / "records500", ecg_data_dir / "cinc2021", ward]
    serial = screen(sources, scorer, tmp_path / "serial", threshold=0.0, batch_size=5, workers=0, progress=False)

    pids = tmp_path / "pids"

    def prepare_noting_the_process(*args, **kwargs):
        with pids.open("a") as f:
            f.write(f"{os.getpid()}\n")
        return prepare(*args, **kwargs)

    monkeypatch.setattr("hfrisk.screening.prepare", prepare_noting_the_process)
    parallel = screen(sources, scorer, tmp_path / "parallel", threshold=0.0, batch_size=5, workers=2, chunk_size=3,
                      progress=False)
    assert len(serial) == 24 + 4 + 8 and set(serial["status"]) == {"scored", "low_quality", "refused"}
    pd.testing.assert_frame_equal(serial, parallel)
    preprocessed_in = pids.read_text().split()
    assert len(preprocessed_in) == 24 + 4 + 7  # every readable recording, once
    assert str(os.getpid()) not in preprocessed_in  # all of it in the pool


def test_parallel_screening_resumes_after_an_interruption(ward, tmp_path, scorer):
    out = tmp_path / "out"
    calls = []

    class FailsOnSecondBatch:
        card = scorer.card

        def score(self, x):
            calls.append(len(x))
            if len(calls) == 2:
                raise RuntimeError("scorer went away")
            return scorer.score(x)

    with pytest.raises(RuntimeError, match="went away"):
        screen([ward], FailsOnSecondBatch(), out, threshold=0.0, batch_size=3, workers=2, chunk_size=2, progress=False)
    first = pd.read_csv(out / SCORES_FILENAME)
    assert (first["status"] == "scored").sum() == 3  # the first batch was written, the second not
    frame = screen([ward], scorer, out, threshold=0.0, batch_size=3, workers=2, chunk_size=2, progress=False)
    assert len(frame) == 8 and frame["record"].is_unique and (frame["status"] == "scored").sum() == 6
    reference = screen([ward], scorer, tmp_path / "ref", threshold=0.0, workers=0, progress=False)
    assert sorted(frame["record"]) == sorted(reference["record"])
    merged = frame.merge(reference, on="record")
    assert (merged["status_x"] == merged["status_y"]).all()
    assert (merged["log_risk_x"].isna() == merged["log_risk_y"].isna()).all()
    assert ((merged["log_risk_x"] - merged["log_risk_y"]).abs().fillna(0) <= 1e-6).all()
