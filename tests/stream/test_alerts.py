"""Alert hysteresis: raise after a run above the threshold, clear after a run below the clear
threshold, ignore low-quality windows, and change nothing when a window is processed again."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hfrisk.core.config import StreamSettings
from hfrisk.stream.alerts.policy import AlertEvent, AlertKind, AlertPolicy, AlertState

PATIENT = "bed-7"
T0_US = 1_700_000_000_000_000
HOP_US = 5_000_000
POLICY = AlertPolicy(threshold=1.0, clear_threshold=0.8, min_windows=2)


def _run(policy, scores, *, state=None, fit=None, start=0):
    """Feed windows start, start+1, ...; returns (final state, [(window index, kind)], all events)."""
    state = state or AlertState()
    events = []
    for i, risk in enumerate(scores, start):
        state, event = policy.observe(
            state, patient_id=PATIENT, window_id=f"w{i}", window_start_us=T0_US + i * HOP_US,
            log_risk=risk, fit_to_score=True if fit is None else fit[i - start],
        )
        if event:
            events.append(event)
    return state, [(int(e.window_id[1:]), e.kind) for e in events], events


def test_raises_after_min_windows_at_or_above_the_threshold_and_clears_after_min_windows_below_clear():
    scores = [0.5, 1.2, 0.9, 1.0, 1.1, 0.9, 0.85, 0.7, 0.95, 0.7, 0.6, 1.3]
    state, kinds, events = _run(POLICY, scores)
    # 1.2 alone does not raise (0.9 breaks the run); 1.0 (at the threshold) and 1.1 do. Flagged,
    # 0.9 and 0.85 sit between the thresholds and change nothing; 0.7 starts a clear run that
    # 0.95 breaks; 0.7, 0.6 clear it. 1.3 starts a new raise run.
    assert kinds == [(4, AlertKind.RAISED), (10, AlertKind.CLEARED)]
    raised, cleared = events
    assert (raised.log_risk, raised.threshold, raised.windows) == (1.1, 1.0, 2)
    assert raised.window_start_us == T0_US + 4 * HOP_US
    assert (cleared.log_risk, cleared.threshold) == (0.6, 0.8)
    assert state == AlertState(flagged=False, run=1, last_window_id="w11", last_window_start_us=T0_US + 11 * HOP_US)


def test_flagged_state_records_the_window_that_raised_it():
    state, kinds, _ = _run(POLICY, [1.5, 1.5, 1.5])
    assert kinds == [(1, AlertKind.RAISED)]
    assert state.flagged and state.since_window_id == "w1" and state.since_us == T0_US + HOP_US
    assert state.run == 0  # 1.5 counts towards nothing while flagged


def test_low_quality_and_unscored_windows_neither_raise_nor_clear_nor_break_a_run():
    fit = [True, False, False, True]
    _, kinds, _ = _run(POLICY, [1.2, 3.0, 0.0, 1.2], fit=fit)
    assert kinds == [(3, AlertKind.RAISED)]  # the two unfit windows are invisible

    flagged, _, _ = _run(POLICY, [2.0, 2.0])
    state, kinds, _ = _run(POLICY, [0.1, 0.1, 0.1, None, float("nan")], state=flagged, fit=[False] * 3 + [True] * 2,
                           start=2)
    assert kinds == [] and state.flagged and state.run == 0


def test_reprocessing_a_window_or_an_older_one_arriving_late_changes_nothing():
    state, _, _ = _run(POLICY, [1.5])  # one window towards a raise
    again, event = POLICY.observe(state, patient_id=PATIENT, window_id="w0", window_start_us=T0_US,
                                  log_risk=1.5, fit_to_score=True)
    assert again == state and event is None  # not counted twice: still one window, no raise
    older, event = POLICY.observe(state, patient_id=PATIENT, window_id="w-1", window_start_us=T0_US - HOP_US,
                                  log_risk=9.9, fit_to_score=True)
    assert older == state and event is None


@settings(max_examples=200, deadline=None)
@given(
    scores=st.lists(st.one_of(st.floats(-2, 3), st.none()), max_size=40),
    replays=st.lists(st.integers(0, 39), max_size=20),
)
def test_property_redelivering_any_windows_gives_the_same_states_and_events(scores, replays):
    """Processing each window again right after any later window gives the same final state and
    the same events, once each; and the flag always matches the last event."""
    _, _, reference = _run(POLICY, scores)
    state, events = AlertState(), []
    for i, risk in enumerate(scores):
        for j in [i] + [r for r in replays if r < i]:  # window i, then redeliveries of older ones
            state, event = POLICY.observe(
                state, patient_id=PATIENT, window_id=f"w{j}", window_start_us=T0_US + j * HOP_US,
                log_risk=scores[j], fit_to_score=True,
            )
            if event:
                events.append(event)
    assert events == reference
    expected_flag = bool(reference) and reference[-1].kind is AlertKind.RAISED
    assert state.flagged == expected_flag
    kinds = [e.kind for e in events]
    assert all(a != b for a, b in zip(kinds, kinds[1:]))  # strictly alternating raise/clear


def test_state_and_events_round_trip_through_their_wire_forms():
    state, _, events = _run(POLICY, [1.5, 1.5, 0.2])
    assert AlertState.from_fields(state.to_fields()) == state
    assert AlertState.from_fields({k.encode(): v.encode() for k, v in state.to_fields().items()}) == state
    assert AlertState.from_fields({}) == AlertState()
    (raised,) = events
    assert AlertEvent.from_dict(raised.to_dict()) == raised
    assert raised.event_id == f"{PATIENT}/w1/raised"
    assert b'"kind":"raised"' in raised.to_json()


def test_wire_forms_are_fixed():
    """The alerts topic's JSON, the Redis stream entry (all strings) and the alert hash, byte for byte."""
    event = AlertEvent(kind=AlertKind.RAISED, patient_id="bed-3", window_id="1700000000123456-1",
                       window_start_us=1_700_000_005_123_456, log_risk=1.4, threshold=1.0, windows=2)
    assert event.to_json() == (
        b'{"at":"2023-11-14T22:13:25.123456+00:00","event_id":"bed-3/1700000000123456-1/raised","kind":"raised",'
        b'"log_risk":1.4,"patient_id":"bed-3","threshold":1.0,"window_id":"1700000000123456-1",'
        b'"window_start_us":1700000005123456,"windows":2}'
    )
    entry = {f.encode(): str(v).encode() for f, v in event.to_dict().items()}  # as XRANGE returns it
    assert list(event.to_dict()) == ["kind", "patient_id", "window_id", "window_start_us", "log_risk", "threshold",
                                     "windows", "event_id", "at"]
    assert AlertEvent.from_dict(entry) == event
    state = AlertState(flagged=True, run=1, last_window_id="w3", last_window_start_us=7, since_window_id="w2",
                       since_us=5)
    assert state.to_fields() == {"flagged": "1", "run": "1", "last_window_id": "w3", "last_window_start_us": "7",
                                 "since_window_id": "w2", "since_us": "5"}
    assert AlertState().to_fields() == {"flagged": "0", "run": "0", "last_window_id": "", "last_window_start_us": "",
                                        "since_window_id": "", "since_us": ""}
    assert AlertState.from_fields(AlertState().to_fields()) == AlertState()


def test_policy_comes_from_settings_and_refuses_inverted_thresholds():
    policy = AlertPolicy.from_settings(StreamSettings(risk_threshold=2.0, clear_threshold=1.5, min_windows_to_flag=3))
    assert policy == AlertPolicy(2.0, 1.5, 3)
    with pytest.raises(ValueError, match="clear_threshold"):
        AlertPolicy(threshold=1.0, clear_threshold=1.2)
    with pytest.raises(ValueError, match="min_windows"):
        AlertPolicy(threshold=1.0, clear_threshold=0.5, min_windows=0)
    # min_windows=1: every crossing flips the flag at once.
    _, kinds, _ = _run(AlertPolicy(1.0, 0.8, 1), [1.0, 0.79, 0.8, 1.0])
    assert kinds == [(0, AlertKind.RAISED), (1, AlertKind.CLEARED), (3, AlertKind.RAISED)]
