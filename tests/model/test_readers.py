"""Format dispatch (read_ecg) and record discovery (iter_records)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import wfdb

from hfrisk.model.contract.errors import ECGInputError, InputErrorReason
from hfrisk.model.readers.dispatch import iter_records, read_ecg, record_paths


@pytest.mark.parametrize("suffix", ["", ".hea", ".mat"])
def test_wfdb_record_by_any_of_its_paths(cinc_record, suffix):
    ecg = read_ecg(f"{cinc_record}{suffix}")
    assert ecg.metadata["format"] == "wfdb"
    assert ecg.samples.shape == (12, 5000)


def test_wfdb_keywords_pass_through(mitbih_record):
    ecg = read_ecg(mitbih_record.with_suffix(".dat"), sampfrom=360, sampto=1080, channels=["V5"])
    assert ecg.lead_names == ("V5",) and ecg.samples.shape == (1, 720)


def test_dicom_by_extension_or_by_magic(tmp_path, dicom_ecg_path):
    assert read_ecg(dicom_ecg_path).metadata["format"] == "dicom"
    bare = tmp_path / "ECG0001"  # PACS exports often have no extension
    shutil.copy(dicom_ecg_path, bare)
    beat = read_ecg(bare, waveform="median")
    assert beat.metadata["format"] == "dicom" and beat.samples.shape == (12, 1200)


def test_unknown_or_missing_files_are_unreadable(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("12-lead ECG, looks fine")
    for path in (notes, tmp_path / "absent", tmp_path / "absent.dcm", tmp_path / "absent.hea"):
        with pytest.raises(ECGInputError) as err:
            read_ecg(path)
        assert err.value.reason is InputErrorReason.UNREADABLE
        assert str(path.with_suffix("")) in str(err.value)


def test_iter_records_finds_wfdb_headers_and_dicom_files(tmp_path, ecg_data_dir, dicom_ecg_path):
    shutil.copytree(ecg_data_dir / "cinc2021", tmp_path / "cinc")
    shutil.copy(ecg_data_dir / "wfdb-samples" / "100.hea", tmp_path / "cinc")
    shutil.copy(ecg_data_dir / "wfdb-samples" / "100.dat", tmp_path / "cinc")
    shutil.copy(ecg_data_dir / "wfdb-samples" / "100.atr", tmp_path / "cinc")
    (tmp_path / "dicom" / "deep").mkdir(parents=True)
    shutil.copy(dicom_ecg_path, tmp_path / "dicom" / "a.dcm")
    shutil.copy(dicom_ecg_path, tmp_path / "dicom" / "deep" / "IM0001")
    (tmp_path / "dicom" / "README.txt").write_text("exported from the cart")

    found = list(iter_records(tmp_path))
    names = [p.relative_to(tmp_path).as_posix() for p in found]
    assert names == [
        "cinc/100.hea", "cinc/A0689.hea", "cinc/E07500.hea", "cinc/HR06000.hea", "cinc/HR06002.hea",
        "dicom/a.dcm", "dicom/deep/IM0001",
    ]
    for path in found:
        assert read_ecg(path, **({"sampto": 3600} if path.name == "100.hea" else {})).n_leads >= 2


def test_iter_records_over_all_test_data_yields_one_path_per_header(ecg_data_dir):
    found = list(iter_records(ecg_data_dir))
    headers = sorted(ecg_data_dir.rglob("*.hea"))
    assert found == headers
    assert any(p.name == "00024_hr.hea" for p in found)


def test_iter_records_skips_segments_of_multi_segment_record(tmp_path):
    for k in (1, 2):
        wfdb.wrsamp(f"ms_{k}", fs=360, units=["mV"], sig_name=["MLII"], p_signal=np.zeros((50, 1)),
                    fmt=["16"], write_dir=str(tmp_path))
    (tmp_path / "ms.hea").write_text("ms/2 1 360 100\nms_1 50\nms_2 50\n")
    assert list(iter_records(tmp_path)) == [tmp_path / "ms.hea"]
    assert read_ecg(tmp_path / "ms.hea").n_samples == 100


def test_iter_records_follows_linked_files_not_linked_folders_and_reads_a_header_with_comments_first(tmp_path,
                                                                                                     ecg_data_dir):
    # As rglob("*") with is_file(): a linked folder is not searched (it could loop), a link to a file is a
    # file, a broken link is not; and a multi-segment header is known by its record line after comments.
    src = ecg_data_dir / "wfdb-samples"
    (tmp_path / "real").mkdir()
    for ext in ("hea", "dat"):
        shutil.copy(src / f"100.{ext}", tmp_path / "real" / f"100.{ext}")
    (tmp_path / "folder-link").symlink_to(tmp_path / "real", target_is_directory=True)
    (tmp_path / "file-link.hea").symlink_to(tmp_path / "real" / "100.hea")
    (tmp_path / "broken.hea").symlink_to(tmp_path / "nowhere.hea")
    (tmp_path / "a-b").mkdir()  # '-' sorts before '/': the order is by path parts, not by text
    (tmp_path / "a-b" / "x.hea").write_text((src / "100.hea").read_text())
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.hea").write_text((src / "100.hea").read_text())
    (tmp_path / "ms.hea").write_text("# made by hand\n\nms/1 1 360 50 # one segment\nseg 50\n")
    (tmp_path / "seg.hea").write_text((src / "100.hea").read_text())
    # Its record line beyond the first 4 kB that are read of every header.
    (tmp_path / "long.hea").write_text("# a comment of many words\n" * 400 + "long/1 1 360 50\nseg2 50\n")
    # Its record line cut by the end of those 4 kB, inside its name.
    (tmp_path / "cut.hea").write_text("#" * 4093 + "\ncut/1 1 360 50\nseg3 50\n")
    (tmp_path / "seg3.hea").write_text((src / "100.hea").read_text())
    (tmp_path / "seg2.hea").write_text((src / "100.hea").read_text())
    names = [p.relative_to(tmp_path).as_posix() for p in iter_records(tmp_path)]
    assert names == ["a/x.hea", "a-b/x.hea", "cut.hea", "file-link.hea", "long.hea", "ms.hea", "real/100.hea"]
    assert names == [p.relative_to(tmp_path).as_posix() for p in sorted(tmp_path.rglob("*.hea"))
                     if p.is_file() and p.name not in ("seg.hea", "seg2.hea", "seg3.hea")]


def test_records_are_listed_a_folder_at_a_time_each_folders_segments_left_out(tmp_path, ecg_data_dir, monkeypatch):
    """The first folder's records come before the next folder is opened (screening starts on them),
    and a master header that sorts after its segments still keeps them out of the list."""
    header = (ecg_data_dir / "wfdb-samples" / "100.hea").read_text()
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "r.hea").write_text(header)
    (tmp_path / "b" / "a_seg.hea").write_text(header)
    (tmp_path / "b" / "z.hea").write_text("z/1 1 360 50\na_seg 50\n")
    opened = []
    scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path: opened.append(os.path.basename(path)) or scandir(path))
    paths = record_paths(tmp_path)
    assert next(paths) == str(tmp_path / "a" / "r.hea") and "b" not in opened
    assert list(paths) == [str(tmp_path / "b" / "r.hea"), str(tmp_path / "b" / "z.hea")]
    assert [str(p) for p in iter_records(tmp_path)] == [str(tmp_path / f) for f in ("a/r.hea", "b/r.hea", "b/z.hea")]


def test_iter_records_from_a_list(tmp_path, ptbxl_record_lr, cinc_record, ecg_data_dir):
    items = [
        ptbxl_record_lr,  # extension-less record path
        cinc_record.with_suffix(".mat"),  # a signal file
        ecg_data_dir / "wfdb-samples",  # a folder
        tmp_path / "absent.dcm",  # kept, so the batch reports it
    ]
    assert list(iter_records(items)) == [
        ptbxl_record_lr.with_suffix(".hea"),
        cinc_record.with_suffix(".hea"),
        ecg_data_dir / "wfdb-samples" / "100.hea",
        ecg_data_dir / "wfdb-samples" / "s0010_re.hea",
        tmp_path / "absent.dcm",
    ]
    assert list(iter_records(str(cinc_record) + ".hea")) == [cinc_record.with_suffix(".hea")]


def test_every_lead_name_read_from_test_data_is_known_to_leads(ecg_data_dir, dicom_ecg_path):
    # Readers keep names as found; the contract is that leads.py understands all of them.
    from hfrisk.model.contract.leads import normalise_lead_name

    names = set()
    for path in [*iter_records(ecg_data_dir), dicom_ecg_path]:
        names.update(read_ecg(path, **({} if path.suffix == ".dcm" else {"sampto": 100})).lead_names)
    assert {"AVR", "aVR", "avr", "MLII", "vx", "I"} <= names
    for name in names:
        normalise_lead_name(name)  # raises UNKNOWN_LEAD for a name it cannot place
