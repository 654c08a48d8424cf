import os
import sys
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from hfrisk.cli import app
from hfrisk.model.frontend.preprocessing import prepare, prepare_windows
from hfrisk.model.readers.dispatch import read_ecg
from hfrisk.serving.scorers import OnnxScorer, find_model_version
import hfrisk.screening as screening
from tests.screening.conftest import note_scoring_processes
from hfrisk.screening import SCORES_FILENAME, screen


def test_find_model_version_prefers_newest(tmp_path, exported_model_dir):
    for version in ("1", "2", "10"):
        (tmp_path / "hfrisk" / version).mkdir(parents=True)
        shutil.copy(exported_model_dir / "model.onnx", tmp_path / "hfrisk" / version / "model.onnx")
    assert find_model_version(tmp_path).name == "10"
    with pytest.raises(FileNotFoundError):
        find_model_version(tmp_path / "nothing")


def test_rows_are_written_as_pandas_writes_them(ward, scorer):
    import dataclasses
    import math

    from hfrisk.model.readers.dispatch import iter_records

    records = screening.prepare_records(list(iter_records(ward)), scorer.card)
    screening.score_windows([(row, item.x) for windows in records for row, item in windows if item is not None],
                            scorer, 0.0, 32)
    rows = [row for windows in records for row, _ in windows]
    assert {row.status for row in rows} == {"scored", "low_quality", "refused"}
    # And the awkward values a row can hold: quotes, commas, line breaks and non-ASCII in text; tiny,
    # huge and negative zero floats; NaN and None.
    rows.append(dataclasses.replace(rows[0], record='/data/"ward", bed 3\nIII.hea', reason="électrode; \"V1\", off",
                                    patient_id="", log_risk=-0.0, hazard_ratio=1e-7, quality_score=1e16,
                                    heart_rate_bpm=math.nan, lead_attention=None))
    expected = pd.DataFrame({c: [getattr(r, c) for r in rows] for c in screening._COLUMNS}).to_csv(index=False,
                                                                                                  header=False)
    assert screening.csv_text(rows) == expected


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

    def prepare_noting_the_process(requests, *args, **kwargs):
        with pids.open("a") as f:
            f.writelines(f"{os.getpid()}\n" for _ in requests)
        return prepare_windows(requests, *args, **kwargs)

    monkeypatch.setattr("hfrisk.screening.prepare_windows", prepare_noting_the_process)
    scored_pids = note_scoring_processes(monkeypatch, tmp_path / "scored-pids")
    # Asked for: by default a pool of two scores only on a machine of two cores or fewer.
    parallel = screen(sources, scorer, tmp_path / "parallel", threshold=0.0, batch_size=5, workers=2, chunk_size=3,
                      progress=False, score_in_pool=True)
    assert len(serial) == 24 + 4 + 8 and set(serial["status"]) == {"scored", "low_quality", "refused"}
    pd.testing.assert_frame_equal(serial, parallel)
    preprocessed_in = pids.read_text().split()
    assert len(preprocessed_in) == 24 + 4 + 7  # every window of every readable recording, once
    assert str(os.getpid()) not in preprocessed_in  # all of it in the pool
    # ONNX Runtime replicates: each pool process scored the windows it prepared, and only those.
    scored_in = scored_pids()
    assert len(scored_in) == (serial["status"] == "scored").sum()
    assert set(scored_in) <= set(preprocessed_in)


def test_serial_screening_preprocesses_a_chunk_of_recordings_per_front_end_call(ward, tmp_path, scorer, monkeypatch):
    # The front end is batched: one recording per call cost twice the CPU of eight.
    calls = []

    def prepare_counting(requests, *args, **kwargs):
        calls.append(len({id(ecg) for ecg, _ in requests}))
        return prepare_windows(requests, *args, **kwargs)

    reference = screen([ward], scorer, tmp_path / "ref", threshold=0.0, workers=0, chunk_size=1, progress=False)
    monkeypatch.setattr("hfrisk.screening.prepare_windows", prepare_counting)
    frame = screen([ward], scorer, tmp_path / "out", threshold=0.0, workers=0, chunk_size=3, progress=False)
    readable = len(reference[reference["status"] != "refused"]["record"].unique())
    assert sum(calls) == readable and max(calls) == 3 and len(calls) < readable
    pd.testing.assert_frame_equal(frame, reference)


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


class _FailsOnARecord:
    """An ONNX Runtime scorer that fails on one recording's model input, wherever it runs."""

    def __init__(self, scorer, poison):
        self.scorer, self.card, self.poison = scorer, scorer.card, poison

    def score(self, x):
        if any(np.array_equal(row, self.poison) for row in x):
            raise RuntimeError("scorer went away")
        return self.scorer.score(x)

    def replica(self):
        make = self.scorer.replica()
        return lambda: _FailsOnARecord(make(), self.poison)


def test_screening_scored_in_the_pool_resumes_after_a_failure_there(ward, tmp_path, scorer, monkeypatch):
    # The third and fourth recordings are the second chunk: it fails in a pool process, after the
    # first chunk's rows were written.
    poison = prepare(read_ecg(ward / "00004_hr"), scorer.card).x
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="went away"):
        screen([ward], _FailsOnARecord(scorer, poison), out, threshold=0.0, batch_size=2, workers=2, chunk_size=2,
               progress=False, score_in_pool=True)
    first = pd.read_csv(out / SCORES_FILENAME)
    assert [os.path.basename(r) for r in first["record"]] == ["00001_hr.hea", "00002_hr.hea"]
    assert (first["status"] == "scored").all()

    # Resumed with a pool that prepares while this process scores (what the benchmark compares).
    scored_in = note_scoring_processes(monkeypatch, tmp_path / "scored-in")
    frame = screen([ward], scorer, out, threshold=0.0, batch_size=2, workers=2, chunk_size=2, progress=False,
                   score_in_pool=False)
    assert scored_in() and set(scored_in()) == {str(os.getpid())}
    reference = screen([ward], scorer, tmp_path / "ref", threshold=0.0, workers=0, progress=False)
    pd.testing.assert_frame_equal(frame.sort_values("record", ignore_index=True),
                                  reference.sort_values("record", ignore_index=True))


@pytest.mark.parametrize("cores, scored_in_pool", [(2, True), (4, False)])
def test_by_default_the_pool_scores_when_it_has_a_process_for_every_core(ward, tmp_path, scorer, monkeypatch, cores,
                                                                          scored_in_pool):
    scored_in = note_scoring_processes(monkeypatch, tmp_path / "scored-in")
    monkeypatch.setattr("hfrisk.screening.default_workers", lambda: cores)
    screen([ward], scorer, tmp_path / "out", threshold=0.0, workers=2, chunk_size=2, progress=False)
    assert scored_in() and (str(os.getpid()) not in scored_in()) == scored_in_pool


def test_an_onnx_scorer_replica_travels_to_a_spawned_process_and_scores_the_same(scorer, exported_model_dir):
    import gc
    import pickle

    x = np.random.default_rng(0).standard_normal((3, *scorer.card.input.shape[1:])).astype(np.float32)
    expected = scorer.score(x)
    # Replicable: the replica loads the graph ONNX Runtime optimised for the original, kept beside it.
    replicable = OnnxScorer.from_model_dir(exported_model_dir, threads=2, replicable=True)
    for original in (scorer, replicable):
        replica = pickle.loads(pickle.dumps(original.replica()))()
        assert replica.session.get_session_options().intra_op_num_threads == 1
        for name, value in expected.items():
            np.testing.assert_array_equal(replica.score(x)[name], value)
    optimized = replicable._optimized_copy
    assert replica.onnx_path == optimized and optimized.is_file()
    del replicable, original
    gc.collect()
    assert not optimized.parent.exists()  # gone with the scorer that made it


def test_window_starts_cover_a_recording_side_by_side_or_every_hop(scorer):
    from hfrisk.screening import window_starts

    card = scorer.card  # 10-s windows, 8-s tails accepted
    assert window_starts(10.0, card) == [0.0]  # PTB-XL: one window, as before
    assert window_starts(9.0, card) == [0.0] and window_starts(3.0, card) == [0.0]  # prepare refuses it
    assert window_starts(38.4, card) == [0.0, 10.0, 20.0, 30.0]  # the 8.4-s tail is a window
    assert window_starts(37.9, card) == [0.0, 10.0, 20.0]
    assert window_starts(30.0, card, hop_s=5.0) == [0.0, 5.0, 10.0, 15.0, 20.0]
    with pytest.raises(ValueError):
        window_starts(30.0, card, hop_s=0.0)


@pytest.fixture()
def long_records(tmp_path, ecg_data_dir):
    """MIT-BIH 100 (30 min, two leads at 360 Hz) and PTB s0010_re (38.4 s, 15 channels at 1 kHz)."""
    folder = tmp_path / "holter"
    folder.mkdir()
    for name, exts in (("100", ("hea", "dat")), ("s0010_re", ("hea", "dat", "xyz"))):
        for ext in exts:
            shutil.copy(ecg_data_dir / "wfdb-samples" / f"{name}.{ext}", folder / f"{name}.{ext}")
    return folder


def test_long_recordings_get_a_row_per_window_and_a_record_summary(long_records, tmp_path, scorer):
    from hfrisk.screening import RECORDS_FILENAME

    out = tmp_path / "out"
    frame = screen([long_records], scorer, out, threshold=0.0, batch_size=16, progress=False, workers=0)
    holter = frame[frame["record"].str.endswith("100.hea")]
    assert list(holter["window_start_s"]) == [10.0 * k for k in range(180)]  # 1805.6 s
    assert (holter["windows_in_record"] == 180).all()
    # Two leads: scored with the other leads masked, or refused by the quality gate; never skipped.
    assert set(holter["status"]) <= {"scored", "low_quality"}
    assert (holter["duration_s"] == 10.0).all() and (holter["n_beats_detected"] >= holter["n_beats_used"]).all()
    ptb = frame[frame["record"].str.endswith("s0010_re.hea")]
    assert list(ptb["window_start_s"]) == [0.0, 10.0, 20.0, 30.0] and list(ptb["duration_s"]) == [10, 10, 10, 8.4]
    assert (ptb["status"] == "scored").all()
    # Each window is what prepare makes of it, scored like any other input.
    ecg = read_ecg(long_records / "s0010_re.hea")
    third = scorer.score(prepare(ecg, scorer.card, window_start_s=20.0).x[None])["log_risk"][0, 0]
    assert ptb["log_risk"].iloc[2] == pytest.approx(float(third), abs=1e-5)

    records = pd.read_csv(out / RECORDS_FILENAME).set_index("record")
    assert len(records) == 2
    summary = records.loc[str(long_records / "s0010_re.hea")]
    assert (summary["windows"], summary["windows_scored"], summary["windows_refused"]) == (4, 4, 0)
    assert summary["median_log_risk"] == pytest.approx(ptb["log_risk"].median())
    assert summary["max_log_risk"] == pytest.approx(ptb["log_risk"].max())
    assert summary["max_log_risk_window_s"] == ptb["window_start_s"].iloc[int(np.argmax(ptb["log_risk"]))]
    assert summary["flagged"] == (summary["median_log_risk"] >= 0.0)
    assert summary["windows_flagged"] == (ptb["log_risk"] >= 0.0).sum() and summary["status"] == "scored"
    holter_summary = records.loc[str(long_records / "100.hea")]
    assert holter_summary["windows"] == 180
    assert holter_summary["windows_scored"] + holter_summary["windows_low_quality"] == 180


def test_cli_screen_of_long_records_with_a_hop(long_records, tmp_path, exported_model_dir):
    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["screen", str(long_records / "s0010_re"), "--in-process", "--model",
                                      str(exported_model_dir), "--out", str(out), "--threshold", "0",
                                      "--hop-s", "5", "--workers", "0"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "1 recordings: 1 scored" in text and "7 windows: 7 scored" in text, text[-3000:]  # 0, 5, ..., 30 s
    windows, records = pd.read_parquet(out / "scores.parquet"), pd.read_parquet(out / "records.parquet")
    assert list(windows["window_start_s"]) == [0, 5, 10, 15, 20, 25, 30] and len(records) == 1
    assert records["windows_scored"].iloc[0] == 7 and (out / "summary.png").is_file()


def test_a_long_record_cut_short_is_screened_again_whole(long_records, tmp_path, scorer):
    out = tmp_path / "out"
    source = [long_records / "s0010_re.hea"]
    first = screen(source, scorer, out, threshold=0.0, progress=False, workers=0)
    first.iloc[:2].to_csv(out / SCORES_FILENAME, index=False)  # as if stopped after two windows
    again = screen(source, scorer, out, threshold=0.0, progress=False, workers=0)
    pd.testing.assert_frame_equal(again, first)


def test_scores_written_before_windows_and_beat_counts_resume(ward, tmp_path, scorer):
    """A scores.csv of the one-window layout (one ``n_beats``, the beats used) is read and extended."""
    from hfrisk.screening import read_scores

    out = tmp_path / "out"
    new = screen([ward / "00001_hr.hea"], scorer, out, threshold=0.0, progress=False, workers=0)
    old = new.drop(columns=["window_start_s", "windows_in_record", "n_beats_detected"])
    old.rename(columns={"n_beats_used": "n_beats"}).to_csv(out / SCORES_FILENAME, index=False)
    frame = screen([ward], scorer, out, threshold=0.0, progress=False, workers=0)
    assert len(frame) == 8 and frame["record"].is_unique
    row = frame[frame["record"] == str(ward / "00001_hr.hea")].iloc[0]
    assert row["n_beats_used"] == new["n_beats_used"].iloc[0] and np.isnan(row["n_beats_detected"])
    assert row["window_start_s"] == 0.0 and row["log_risk"] == pytest.approx(new["log_risk"].iloc[0])
    assert list(read_scores(out / SCORES_FILENAME).columns) == list(frame.columns)


def test_cli_screen_with_the_bundled_model_gives_percentile_and_absolute_risk(tmp_path, ecg_data_dir, monkeypatch):
    """The shipped card's risk scale reaches every scored row, each recording and the printed table;
    the default flag is the settings' absolute-risk rule through that scale."""
    from pathlib import Path

    from hfrisk.core.config import get_settings
    from hfrisk.model.contract.card import load_card
    from hfrisk.screening import RECORDS_FILENAME

    bundled = Path(__file__).resolve().parents[2] / "triton_models"
    scale = load_card(bundled / "hfrisk").risk_scale
    monkeypatch.setenv("HFRISK_STREAM__FLAG_ON", "absolute_risk")
    monkeypatch.setenv("COLUMNS", "200")  # rich would cut the table to 80 columns
    monkeypatch.setenv("HFRISK_STREAM__FLAG_ABSOLUTE_RISK", "0.05")
    monkeypatch.setenv("HFRISK_STREAM__CLEAR_ABSOLUTE_RISK", "0.04")
    get_settings.cache_clear()
    try:
        out = tmp_path / "bundled"
        result = CliRunner().invoke(app, ["screen", str(ecg_data_dir / "ptbxl" / "records500"), "--in-process",
                                          "--model", str(bundled), "--out", str(out), "--workers", "0"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "5-year absolute risk >= 5.0%" in result.output and "percentile" in result.output
    rows = pd.read_csv(out / SCORES_FILENAME)
    scored = rows[rows["status"] == "scored"]
    assert len(scored) == 24
    np.testing.assert_allclose(scored["risk_percentile"], scale.percentile(scored["log_risk"]), atol=1e-9)
    np.testing.assert_allclose(scored["absolute_risk"],
                               1 - scale.absolute_risk.baseline_survival ** np.exp(scored["log_risk"]), rtol=1e-9)
    assert (scored["absolute_risk_horizon_days"] == 1826.25).all()
    # Flagged exactly where the 5-year risk reaches 5 %, and recordings carry their median's terms.
    assert (scored["flagged"] == (scored["absolute_risk"] >= 0.05 - 1e-12)).all()
    assert 0 < scored["flagged"].sum() < len(scored)
    records = pd.read_csv(out / RECORDS_FILENAME)
    np.testing.assert_allclose(records["risk_percentile"], scale.percentile(records["median_log_risk"]), atol=1e-9)
    top = records.sort_values("median_log_risk").iloc[-1]
    assert f"{top['risk_percentile']:.1f}" in result.output and f"{top['absolute_risk']:.1%}" in result.output


# In a process of its own: whether freed arrays go back to the kernel depends on what the process
# allocated and freed before (glibc moves its thresholds as it goes), so a fresh one, as `hfrisk screen` is.
CHUNK_FAULTS = """
import json, os, resource, sys, tempfile
from pathlib import Path
import hfrisk.screening as screening
from tests.screening.conftest import note_scoring_processes
from hfrisk.serving.scorers import OnnxScorer

model, source, keep, score_in_pool = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "pool"
log = Path(tempfile.mkdtemp()) / "faults"
real = screening.prepare_records

def counting(paths, *args, **kwargs):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    out = real(paths, *args, **kwargs)
    with log.open("a") as f:
        f.write(f"{resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}\\n")
    return out

screening.prepare_records = counting  # the forked pool inherits it
with tempfile.TemporaryDirectory() as out:
    # As `hfrisk screen --in-process` builds it.
    screening.screen([source], OnnxScorer.from_model_dir(model, threads=1, replicable=True), out, threshold=0.0,
                     workers=1, chunk_size=8, progress=False, keep_freed_mb=keep, score_in_pool=score_in_pool)
print(json.dumps([int(n) for n in log.read_text().split()]))
"""


def _chunk_page_faults(model, source, keep_freed_mb: int, score_in_pool: bool) -> list[int]:
    """Minor page faults of each chunk a pool process reads and preprocesses."""
    import json
    import subprocess

    done = subprocess.run([sys.executable, "-c", CHUNK_FAULTS, str(model), str(source), str(keep_freed_mb),
                           "pool" if score_in_pool else "here"],
                          capture_output=True, text=True, check=True, timeout=300)
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_pool_processes_reuse_the_memory_each_chunk_frees(exported_model_dir, ecg_data_dir):
    source = ecg_data_dir / "ptbxl" / "records500"  # 24 recordings: three chunks of eight
    # The front end alone in the pool process: with the C library's defaults it hands each chunk's
    # arrays back to the kernel, and every chunk faults them in again (~3,000 pages here). (With
    # ONNX Runtime beside it the defaults vary from run to run: its buffers move glibc's thresholds.)
    default = _chunk_page_faults(exported_model_dir, source, 0, score_in_pool=False)
    # Kept, as `hfrisk screen --in-process` runs: the pool process preprocesses and scores, and the
    # chunks after the first reuse what the first freed.
    kept = _chunk_page_faults(exported_model_dir, source, 256, score_in_pool=True)
    assert len(default) == len(kept) == 3
    assert min(default[1:]) > 1000
    assert max(kept[1:]) < 0.2 * min(default[1:])


def test_serial_screening_runs_the_front_end_on_one_blas_thread(ward, tmp_path, scorer, monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads() -> set[int]:
        return {p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"}

    if not blas_threads():
        pytest.skip("no BLAS thread pool loaded")
    seen = []

    def prepare_noting_blas(requests, *args, **kwargs):
        seen.append(blas_threads())
        return prepare_windows(requests, *args, **kwargs)

    monkeypatch.setattr("hfrisk.screening.prepare_windows", prepare_noting_blas)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        screen([ward], scorer, tmp_path / "out", threshold=0.0, workers=0, progress=False)
        after = blas_threads()
    # OpenBLAS's extra threads spin on the front end's small products: as much CPU again.
    assert seen and all(s == {1} for s in seen)
    assert after == {2}  # the caller's setting is back once screening is done
