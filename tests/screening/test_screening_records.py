"""records.csv written as the run goes, and recordings listed while the pool works."""

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hfrisk.screening as screening
from hfrisk.model.contract.card import load_card
from hfrisk.screening import RECORDS_FILENAME, SCORES_FILENAME, ScreenRow, read_scores, screen, summarize_records

BUNDLED = Path(__file__).resolve().parents[2] / "triton_models" / "hfrisk"


def _summary_of_the_rows(out: Path, threshold: float, scale) -> str:
    """records.csv as summarize_records makes it from every row of scores.csv: the reference."""
    return summarize_records(read_scores(out / SCORES_FILENAME), threshold, scale).to_csv(index=False)


@pytest.mark.parametrize("workers, score_in_pool", [(2, True), (2, False), (0, None)])
def test_records_csv_written_as_it_goes_is_the_summary_of_the_rows(ward, tmp_path, scorer, ecg_data_dir, workers,
                                                                   score_in_pool):
    sources = [ecg_data_dir / "ptbxl" / "records500", ecg_data_dir / "cinc2021", ward]
    out = tmp_path / "out"
    frame = screen(sources, scorer, out, threshold=-0.2, batch_size=5, workers=workers, chunk_size=3,
                   progress=False, score_in_pool=score_in_pool)
    assert set(frame["status"]) == {"scored", "low_quality", "refused"}
    assert (out / RECORDS_FILENAME).read_text() == _summary_of_the_rows(out, -0.2, scorer.card.risk_scale)


def _row(record, start, status, log_risk=math.nan, top_lead="", reason="", quality=math.nan, patient="",
         windows=1):
    return ScreenRow(record=record, window_start_s=start, patient_id=patient, status=status, reason=reason,
                     quality_score=quality, log_risk=log_risk, top_lead=top_lead, heart_rate_bpm=60.0 + start,
                     windows_in_record=windows)


def test_the_summary_of_each_recording_from_its_rows_is_summarize_records(tmp_path):
    """Against pandas' group aggregations on the rows read back: ties of top lead and of reasons,
    an even number of scored windows, the first of equal maxima, digits for a patient id, a
    recording with nothing scored, NaN quality, with the bundled card's risk scale and without."""
    records = [
        [_row("a.hea", 0.0, "scored", 0.5, "V2", quality=0.9, patient="00123", windows=5),
         _row("a.hea", 10.0, "scored", 0.9, "V1", quality=0.8, windows=5),
         _row("a.hea", 20.0, "low_quality", reason="noise;flat", quality=0.2, windows=5),
         _row("a.hea", 30.0, "scored", 0.9, "V2", windows=5),
         _row("a.hea", 40.0, "scored", -1.25, "V1", quality=0.7, windows=5)],
        [_row("b.hea", 0.0, "low_quality", reason="noise;flat", quality=0.1, windows=3),
         _row("b.hea", 10.0, "low_quality", reason="flat;beats", quality=0.3, windows=3),
         _row("b.hea", 20.0, "refused", reason="too short", windows=3)],
        [_row("c.hea", 0.0, "refused", reason="unreadable: no such file")],
        [_row("d.hea", 0.0, "scored", -0.3, "aVL", quality=0.95, patient="p7")],
    ]
    scale = load_card(BUNDLED).risk_scale
    for threshold, risk_scale in ((0.0, scale), (-0.3, None)):
        scores = tmp_path / f"{threshold}" / SCORES_FILENAME
        scores.parent.mkdir()
        screening._flush([screening.csv_text([row for rows in records for row in rows])], scores, screening._COLUMNS)
        expected = summarize_records(read_scores(scores), threshold, risk_scale).to_csv(index=False, header=False)
        assert screening.records_text(records, threshold, risk_scale) == expected
    assert read_scores(scores)["patient_id"].iloc[0] == "00123"  # text, not the number 123


def test_an_interrupted_run_keeps_the_summaries_of_what_it_wrote_and_resumes(ward, tmp_path, scorer, monkeypatch):
    out = tmp_path / "out"
    real = screening.score_windows
    calls = []

    def fails_on_the_third_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("scorer went away")
        return real(*args, **kwargs)

    monkeypatch.setattr("hfrisk.screening.score_windows", fails_on_the_third_batch)
    with pytest.raises(RuntimeError, match="went away"):
        screen([ward], scorer, out, threshold=0.0, batch_size=2, workers=0, chunk_size=1, progress=False)
    written = read_scores(out / SCORES_FILENAME)
    assert 0 < written["record"].nunique() < 8
    assert (out / RECORDS_FILENAME).read_text() == _summary_of_the_rows(out, 0.0, scorer.card.risk_scale)

    # A run stopped between writing scores.csv and records.csv: the summaries are made again from the rows.
    (out / RECORDS_FILENAME).write_text(",".join(screening.RECORD_COLUMNS) + "\n")
    monkeypatch.setattr("hfrisk.screening.score_windows", real)
    frame = screen([ward], scorer, out, threshold=0.0, batch_size=2, workers=0, progress=False)
    assert len(frame) == 8 and frame["record"].is_unique
    assert (out / RECORDS_FILENAME).read_text() == _summary_of_the_rows(out, 0.0, scorer.card.risk_scale)
    assert pd.read_csv(out / RECORDS_FILENAME)["record"].tolist() == frame["record"].tolist()


def test_nothing_to_screen_writes_the_header_of_records_csv(tmp_path, scorer):
    (tmp_path / "empty").mkdir()
    frame = screen([tmp_path / "empty"], scorer, tmp_path / "out", threshold=0.0, progress=False)
    assert frame.empty
    assert pd.read_csv(tmp_path / "out" / RECORDS_FILENAME).columns.tolist() == screening.RECORD_COLUMNS


def test_the_pool_screens_the_first_chunks_before_the_listing_ends(ward, tmp_path, scorer, monkeypatch):
    """A listing that stops after the first four recordings until their rows are in scores.csv:
    a screen() that listed everything before it started would wait for it forever."""
    out = tmp_path / "out"
    paths = [str(p) for p in sorted(ward.glob("*.hea"))]
    monkeypatch.setattr(screening, "FLUSH_S", 0.0)

    def slow_listing(sources):
        yield from paths[:4]
        deadline = time.monotonic() + 60
        while not (out / SCORES_FILENAME).exists():
            if time.monotonic() > deadline:
                raise TimeoutError("nothing was screened while the listing went on")
            time.sleep(0.05)
        yield from paths[4:]

    monkeypatch.setattr("hfrisk.screening.record_paths", slow_listing)
    frame = screen([ward], scorer, out, threshold=0.0, workers=2, chunk_size=2, progress=False, score_in_pool=True)
    assert frame["record"].tolist() == paths


def test_an_error_while_listing_is_raised_by_screen_after_what_was_listed_is_written(ward, tmp_path, scorer,
                                                                                     monkeypatch):
    paths = [str(p) for p in sorted(ward.glob("*.hea"))]

    def failing_listing(sources):
        yield from paths[:3]
        raise PermissionError("listing went wrong")

    monkeypatch.setattr("hfrisk.screening.record_paths", failing_listing)
    with pytest.raises(PermissionError, match="listing went wrong"):
        screen([ward], scorer, tmp_path / "out", threshold=0.0, batch_size=1, workers=0, chunk_size=1,
               progress=False)
    assert read_scores(tmp_path / "out" / SCORES_FILENAME)["record"].tolist() == paths[:3]


def test_the_listing_hands_out_every_path_once_in_chunks(tmp_path, monkeypatch):
    paths = [f"r{k:04d}.hea" for k in range(1000)]
    monkeypatch.setattr("hfrisk.screening.record_paths", lambda sources: iter(paths))
    listing = screening._Listing([tmp_path], done={"r0003.hea"})
    assert listing.at_least(10) == 10
    chunks = list(listing.chunks(32))
    assert [p for chunk in chunks for p in chunk] == [p for p in paths if p != "r0003.hea"]
    assert all(len(chunk) == 32 for chunk in chunks[:-1]) and listing.finished.is_set() and listing.count == 999
    few = screening._Listing([tmp_path], done=set(paths[5:]))
    assert few.at_least(64) == 5 and list(few.chunks(2)) == [paths[0:2], paths[2:4], paths[4:5]]
    assert np.sum([len(c) for c in chunks]) == 999


def _same(a: pd.Series, b: pd.Series) -> bool:
    return bool(((a == b) | (a.isna() & b.isna())).all())


@pytest.mark.parametrize("empty", [False, True])
def test_the_cli_writes_parquet_copies_that_hold_exactly_the_csv_rows(ward, tmp_path, exported_model_dir, empty):
    from typer.testing import CliRunner

    from hfrisk.cli import app
    from hfrisk.screening import read_records

    source = tmp_path / "nothing" if empty else ward
    source.mkdir(exist_ok=True)
    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["screen", str(source), "--in-process", "--model", str(exported_model_dir),
                                      "--out", str(out), "--threshold", "0", "--workers", "0"])
    assert result.exit_code == 0, result.output
    for parquet, csv in ((out / "scores.parquet", read_scores(out / SCORES_FILENAME)),
                         (out / "records.parquet", read_records(out / RECORDS_FILENAME))):
        copy = pd.read_parquet(parquet)
        assert list(copy.columns) == list(csv.columns) and len(copy) == len(csv) == (0 if empty else 8)
        for column in csv.columns:
            assert _same(copy[column], csv[column]), column
    if not empty:
        assert (out / "summary.png").stat().st_size > 10_000
        assert pd.read_parquet(out / "records.parquet")["patient_id"].dropna().map(type).eq(str).all()


def test_a_stopped_listing_lists_no_further(tmp_path, monkeypatch):
    def endless(sources):
        k = 0
        while True:
            k += 1
            time.sleep(0.001)
            yield f"r{k}.hea"

    monkeypatch.setattr("hfrisk.screening.record_paths", endless)
    listing = screening._Listing([tmp_path], done=set())
    assert listing.at_least(5) == 5 and not listing.finished.is_set()
    listing.stop()
    assert listing.finished.wait(5)
    count = listing.count
    time.sleep(0.05)
    assert listing.count == count
