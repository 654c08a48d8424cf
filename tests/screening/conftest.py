"""What the screening tests share: the scorer, a small ward of recordings, and a way to see which
process scored each window."""

import os
import shutil

import pytest

import hfrisk.screening as screening
from hfrisk.serving.scorers import OnnxScorer


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


def note_scoring_processes(monkeypatch, path):
    """From now on every window scored writes the id of the process that scored it to ``path``
    (pool processes inherit the patch); returns a reader of those ids."""
    real_score_windows = screening.score_windows

    def score_noting_the_process(pending, *args, **kwargs):
        with path.open("a") as f:
            f.writelines(f"{os.getpid()}\n" for _ in pending)
        return real_score_windows(pending, *args, **kwargs)

    monkeypatch.setattr("hfrisk.screening.score_windows", score_noting_the_process)
    return lambda: path.read_text().split() if path.exists() else []
