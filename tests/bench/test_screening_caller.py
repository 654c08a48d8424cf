"""bench/bench_screening_caller.py's run: the calling process's CPU, counted over a whole screening."""

import pytest

from bench.bench_screening_caller import markdown, run_child


def test_a_run_screens_every_record_and_charges_its_listing_to_the_calling_process(ecg_data_dir):
    records = ecg_data_dir / "ptbxl" / "records500"
    run = run_child(records, 24, chunk_size=4)
    assert 0 < run["listing_ms_per_ecg"] < run["caller_ms_per_ecg"] < run["pool_ms_per_ecg"] and run["ecg_per_s"] > 0
    # The CLI's files come on top; they are all the pool waits for: the listing runs beside it, and
    # screen() no longer reads scores.csv back for the CLI.
    assert run["total_ms_per_ecg"] == pytest.approx(run["caller_ms_per_ecg"] + run["cli_files_ms_per_ecg"])
    assert 0 < run["cli_files_ms_per_ecg"] == run["serial_ms_per_ecg"] < run["total_ms_per_ecg"]
    with pytest.raises(RuntimeError, match="of 25 records"):
        run_child(records, 25, chunk_size=4)


def test_the_page_gives_each_code_its_bound_on_any_pool():
    x = {"caller_ms_per_ecg": 0.08, "cli_files_ms_per_ecg": 0.5, "serial_ms_per_ecg": 0.55,
         "listing_ms_per_ecg": 0.03, "pool_ms_per_ecg": 4.0, "ecg_per_s": 500.0}
    result = {"command": "c", "when": "w", "machine": {"cpus": 2, "load_before": [0], "load_after": [0]},
              "baseline_rev": "a" * 40, "current_rev": "b" * 40, "dirty": False, "records": 3000,
              "median": {"baseline": {"8": x}, "current": {"8": x | {"caller_ms_per_ecg": 0.05, "serial_ms_per_ecg": 0.51}}}}
    page = markdown(result)
    assert "| 8 | baseline | 0.080 | 0.050 | 0.500 | 0.030 | 12,500 | 4.00 | 500 |" in page
    assert "| 8 | current | 0.050 | 0.010 | 0.500 | 0.030 | 20,000 | 4.00 | 500 |" in page
