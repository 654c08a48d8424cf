"""bench/bench_worker_gate.py without the reference data: its report from made-up summaries."""

from __future__ import annotations

from bench import bench_worker_gate


def test_worker_gate_report_sets_the_worker_path_beside_the_front_end_page():
    summary = {"n": 498, "n_acceptable": 386, "n_unacceptable": 112, "accuracy": 0.8916,
               "sensitivity_unacceptable": 0.5536, "acceptable_refused": 0.0104}
    r = {"command": "x", "when": "now", "machine": {"cpus": 2, "load_before": [0, 0, 0], "load_after": [0, 0, 0]},
         "prep_workers": 2, "part_windows": 8, "batch": 32, "seconds": 5.0, "worker_path": summary,
         "frontend_page": summary, "verdicts_differ": 3, "max_input_abs_diff": 0.0}
    text = bench_worker_gate.markdown(r)
    assert "| accuracy | 0.892 | 0.892 |" in text and "**3 verdicts differ**" in text


def test_the_report_sets_the_path_from_the_replays_messages_beside_them_with_its_checks():
    summary = {"n": 498, "n_acceptable": 386, "n_unacceptable": 112, "accuracy": 0.8916,
               "sensitivity_unacceptable": 0.5536, "acceptable_refused": 0.0104}
    stream = summary | {"accuracy": 0.8861}
    r = {"command": "x", "when": "now", "machine": {"cpus": 2, "load_before": [0, 0, 0], "load_after": [0, 0, 0]},
         "prep_workers": 2, "part_windows": 8, "batch": 32, "seconds": 5.0, "worker_path": summary,
         "frontend_page": summary, "verdicts_differ": 0, "max_input_abs_diff": 0.0, "stream_path": stream,
         "stream_records_without_window": 1, "stream_samples_differ": 2, "stream_verdicts_differ": 3,
         "stream_max_input_abs_diff": 0.5}
    text = bench_worker_gate.markdown(r)
    assert "| accuracy | 0.892 | 0.886 | 0.892 |" in text
    assert "Records without a window: **1**" in text and "from the record read from its file: **2**" in text
    assert "from `prepare` on the record: **3**" in text


def test_a_record_played_as_messages_comes_out_of_the_assembler_as_the_record_itself(ecg_data_dir):
    import numpy as np

    from hfrisk.model.contract.card import default_card
    from hfrisk.model.readers.dispatch import iter_records, read_ecg

    paths = list(iter_records([ecg_data_dir / "ptbxl" / "records500"]))[:4]
    windows = bench_worker_gate.stream_windows(paths, default_card())
    for path, window in zip(paths, windows, strict=True):
        ecg = read_ecg(path)
        assert window is not None and window.lead_names == ecg.lead_names
        assert window.samples.dtype == ecg.samples.dtype and np.array_equal(window.samples, ecg.samples)
