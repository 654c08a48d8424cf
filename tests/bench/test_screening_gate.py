"""The comparisons of bench/bench_screening_gate.py: screening's verdicts and scores against references."""

import math
from pathlib import Path

from bench.bench_screening_gate import SCORE_TOLERANCE, compare


def test_a_record_not_scored_is_one_the_gate_refused_and_scores_are_held_to_the_reference():
    labelled = [(Path("a"), True), (Path("b"), True), (Path("c"), False), (Path("d"), False)]
    nan = math.nan
    # b: refused though acceptable; c: refused and unacceptable; d: scored though unacceptable, and
    # prepare refused it; a: scored, off the reference by more than the tolerance.
    risk = {"a": 0.5 + 2 * SCORE_TOLERANCE, "b": nan, "c": nan, "d": 1.0}
    reference = {"a": 0.5, "b": nan, "c": nan, "d": nan}
    result = compare(labelled, risk, reference)
    assert result["gate"]["accuracy"] == 0.5
    assert result["gate"]["sensitivity_unacceptable"] == 0.5 and result["gate"]["acceptable_refused"] == 0.5
    assert result["scored"] == 2 and result["verdicts_differ_from_prepare"] == 1
    assert result["scores_off"] == 1 and math.isclose(result["max_abs_log_risk_diff"], 2 * SCORE_TOLERANCE)
