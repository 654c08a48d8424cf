"""The one retry mechanism (hfrisk.core.retries): waits, limits, what is retried and what is logged."""

from __future__ import annotations

import asyncio

import pytest

from hfrisk.core.retries import Backoff, retrying


def test_backoff_doubles_from_its_first_wait_up_to_its_cap_and_jitter_only_shortens():
    assert [Backoff(0.1, 1.0).delay(i) for i in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert Backoff(0.2, 2.0).delay(10_000) == 2.0  # no overflow on a long outage
    for attempt in range(6):
        plain = Backoff(0.1, 1.0).delay(attempt)
        assert all(plain / 2 <= Backoff(0.1, 1.0, jitter=True).delay(attempt) < plain for _ in range(50))


def run(policy, errors: list[BaseException]):
    calls = []

    async def call():
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return "done"

    return asyncio.run(policy(call)), len(calls)


def test_retries_what_it_is_told_with_the_backoff_and_reports_each_wait():
    waits, seen = [], []

    async def sleep(s):
        waits.append(s)

    policy = retrying(retry_on=ConnectionError, backoff=Backoff(0.1, 1.0), sleep=sleep,
                      on_retry=lambda exc, attempt, delay: seen.append((str(exc), attempt, delay)))
    assert run(policy, [ConnectionError("a"), ConnectionError("b"), ConnectionError("c")]) == ("done", 4)
    assert waits == [0.1, 0.2, 0.4]
    assert seen == [("a", 1, 0.1), ("b", 2, 0.2), ("c", 3, 0.4)]


def test_other_errors_and_spent_attempts_raise_the_error_itself():
    async def sleep(_s):
        pass

    with pytest.raises(ValueError, match="not transient"):
        run(retrying(retry_on=ConnectionError, backoff=Backoff(), sleep=sleep), [ValueError("not transient")])
    limited = retrying(retry_on=lambda exc: "retry" in str(exc), backoff=Backoff(), attempts=2, sleep=sleep)
    with pytest.raises(ConnectionError, match="retry 3"):
        run(limited, [ConnectionError("retry 1"), ConnectionError("retry 2"), ConnectionError("retry 3")])
    assert run(limited, [ConnectionError("retry 1"), ConnectionError("retry 2")]) == ("done", 3)


def test_a_first_try_that_succeeds_costs_no_tenacity_and_one_that_fails_is_retried_by_it(monkeypatch):
    import hfrisk.core.retries as retries

    made = []
    real = retries.AsyncRetrying
    monkeypatch.setattr(retries, "AsyncRetrying", lambda **kw: made.append(kw) or real(**kw))

    async def sleep(_s):
        pass

    policy = retrying(retry_on=ConnectionError, backoff=Backoff(), sleep=sleep)
    assert [run(policy, []) for _ in range(3)] == [("done", 1)] * 3
    assert made == []
    assert run(policy, [ConnectionError("down")]) == ("done", 2)
    assert len(made) == 1


def test_no_retries_allowed_raises_the_first_failure_without_waiting():
    waits = []

    async def sleep(s):
        waits.append(s)

    policy = retrying(retry_on=ConnectionError, backoff=Backoff(), attempts=0, sleep=sleep)
    with pytest.raises(ConnectionError, match="once"):
        run(policy, [ConnectionError("once")])
    assert waits == []


def test_the_waits_and_numbers_after_the_first_failure_continue_the_first_ones():
    waits, seen = [], []

    async def sleep(s):
        waits.append(s)

    policy = retrying(retry_on=lambda exc: isinstance(exc, OSError), backoff=Backoff(0.1, 0.3), attempts=4,
                      sleep=sleep, on_retry=lambda exc, attempt, delay: seen.append((attempt, delay)))
    with pytest.raises(OSError, match="5"):
        run(policy, [OSError(str(i)) for i in range(1, 6)])
    assert waits == [0.1, 0.2, 0.3, 0.3]
    assert seen == [(1, 0.1), (2, 0.2), (3, 0.3), (4, 0.3)]
