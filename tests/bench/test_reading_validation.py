"""bench/bench_reading.py validates the reader against wfdb.rdrecord on every record it times."""

from dataclasses import replace
from pathlib import Path

from bench import bench_reading

RECORDS = Path(__file__).resolve().parents[1] / "data" / "ecg" / "ptbxl" / "records500"


def test_every_shipped_ptbxl_record_reads_as_wfdb_reads_it():
    result = bench_reading.validate(RECORDS)
    assert result["records"] >= 5 and result["differing"] == []


def test_a_reader_one_unit_of_least_precision_off_is_caught(monkeypatch):
    from hfrisk.model.readers import dispatch

    real = dispatch.read_ecg

    def off_by_one_ulp(path, **kwargs):
        ecg = real(path, **kwargs)
        samples = ecg.samples.copy()
        samples[0, 100] = samples[0, 100] * (1 + 2**-23) if samples[0, 100] else 1e-30
        return replace(ecg, samples=samples)

    monkeypatch.setattr(dispatch, "read_ecg", off_by_one_ulp)
    result = bench_reading.validate(RECORDS)
    assert len(result["differing"]) == result["records"]
