"""The worker's micro-batches (stream/worker/batching.py) on a real Faust stream: an agent over an
in-memory channel, driven through Faust's own ``test_context``.

What is checked: a batch never holds more than its maximum and every event comes once, in order;
the next batch gathers while the agent works on this one; an event waits for company at most the
linger, counted from its arrival, not from when the agent asks again (where Faust's ``noack_take``
would wait anew); nothing is acknowledged; closing the batches gives the stream back as it was.
"""

from __future__ import annotations

import asyncio
import time

import faust
import pytest

from hfrisk.stream.worker.batching import gathered_batches


def agent_app(max_events: int, linger_s: float, work_s: float, batches: list, *, take=None):
    """A Faust app whose agent records (seconds since the first put, values, values the stream had
    already passed to the batcher) per batch and then works ``work_s`` seconds."""
    app = faust.App(f"batching-{time.monotonic_ns()}", store="memory://", web_enabled=False, autodiscover=False)
    clock = {"t0": None}

    @app.agent(app.channel())
    async def agent(stream):
        source = take(stream) if take else gathered_batches(stream, max_events, linger_s=linger_s)
        async for events in source:
            batches.append((time.monotonic() - clock["t0"], [e.value for e in events]))
            await asyncio.sleep(work_s)

    return agent, clock


async def put_all(agent, clock, schedule: list[tuple[float, int]], settle_s: float) -> None:
    """Put each value at its time (seconds after the start), then leave the agent ``settle_s``."""
    async with agent.test_context() as ctx:
        clock["t0"] = time.monotonic()
        for at, value in schedule:
            delay = at - (time.monotonic() - clock["t0"])
            if delay > 0:
                await asyncio.sleep(delay)
            await ctx.put(value)
        await asyncio.sleep(settle_s)


def test_a_backlog_comes_in_full_batches_each_event_once_in_order():
    batches: list = []
    agent, clock = agent_app(max_events=4, linger_s=2.0, work_s=0.05, batches=batches)
    asyncio.run(put_all(agent, clock, [(0.0, i) for i in range(18)], settle_s=2.6))
    sizes = [len(values) for _, values in batches]
    assert [v for _, values in batches for v in values] == list(range(18))
    assert max(sizes) == 4
    # Full batches do not wait for the 2-s linger: only the last, partial one does.
    assert sizes[:4] == [4, 4, 4, 4] and sizes[4:] == [2]
    assert batches[3][0] < 1.0 and batches[4][0] >= 1.9


def test_a_lone_event_waits_the_linger_and_no_more():
    batches: list = []
    agent, clock = agent_app(max_events=100, linger_s=0.3, work_s=0.0, batches=batches)
    asyncio.run(put_all(agent, clock, [(0.0, "only")], settle_s=1.5))
    assert [values for _, values in batches] == [["only"]]
    assert 0.28 <= batches[0][0] < 1.0


def test_events_arriving_while_the_agent_works_go_as_soon_as_it_asks():
    """Linger 0.5 s, each batch worked on for 0.8 s. The second event arrives 0.1 s into the first
    batch's work: it has waited its 0.5 s by the time the agent asks again (at ~1.3 s), so it goes at
    once, where ``noack_take`` would start a fresh 0.5-s wait (~1.8 s)."""
    schedule = [(0.0, "first"), (0.6, "second")]
    ours: list = []
    agent, clock = agent_app(max_events=100, linger_s=0.5, work_s=0.8, batches=ours)
    asyncio.run(put_all(agent, clock, schedule, settle_s=2.5))
    faust_take: list = []
    agent, clock = agent_app(max_events=100, linger_s=0.5, work_s=0.8, batches=faust_take,
                             take=lambda stream: stream.noack_take(100, within=0.5))
    asyncio.run(put_all(agent, clock, schedule, settle_s=2.5))

    assert [values for _, values in ours] == [["first"], ["second"]]
    assert 1.25 <= ours[1][0] < 1.6
    # The reference: Faust's take, with the same settings, hands the second event over later.
    assert [values for _, values in faust_take] == [["first"], ["second"]]
    assert faust_take[1][0] >= 1.7


def test_the_next_batch_gathers_while_this_one_is_worked_on():
    """Events put while the agent works are in the next batch the moment it asks: with a 10-s
    linger only a full batch can go early, and it does."""
    batches: list = []
    agent, clock = agent_app(max_events=3, linger_s=10.0, work_s=0.5, batches=batches)
    schedule = [(0.0, 0), (0.0, 1), (0.0, 2), (0.1, 3), (0.2, 4), (0.3, 5)]
    asyncio.run(put_all(agent, clock, schedule, settle_s=1.0))
    assert [values for _, values in batches] == [[0, 1, 2], [3, 4, 5]]
    assert batches[1][0] < 0.8  # right after the first batch's 0.5 s of work


def acknowledged_after_two_batches(take) -> dict:
    """Whether the first batch's events were acknowledged once the agent moved on to the second,
    and what the stream looked like before and after the batches were closed."""
    seen: dict = {}

    async def main():
        app = faust.App(f"batching-acks-{time.monotonic_ns()}", store="memory://", web_enabled=False,
                        autodiscover=False)

        @app.agent(app.channel())
        async def agent(stream):
            seen["acks_before"] = stream.enable_acks
            processors = len(stream._processors)
            batches = take(stream)
            first = None
            async for events in batches:
                if first is None:
                    first = list(events)
                    continue
                seen["acked"] = [e.message.acked for e in first]
                break
            await batches.aclose()
            seen["acks_after"] = stream.enable_acks
            seen["processors_left"] = len(stream._processors) - processors

        async with agent.test_context() as ctx:
            for value in "abcd":
                await ctx.put(value)
            await asyncio.sleep(0.3)

    asyncio.run(main())
    return seen


def test_nothing_is_acknowledged_and_the_stream_is_given_back():
    seen = acknowledged_after_two_batches(lambda stream: gathered_batches(stream, 2, linger_s=0.05))
    assert seen["acked"] == [False, False]
    assert seen["acks_after"] == seen["acks_before"]
    assert seen["processors_left"] == 0
    # The reference: Faust's acknowledging take has acknowledged them by then.
    assert acknowledged_after_two_batches(lambda stream: stream.take_events(2, within=0.05))["acked"] == [True, True]


@pytest.mark.parametrize("max_events, linger_s", [(0, 0.1), (4, -0.1)])
def test_impossible_settings_are_refused(max_events, linger_s):
    async def first():
        return await gathered_batches(object(), max_events, linger_s=linger_s).__anext__()

    with pytest.raises(ValueError):
        asyncio.run(first())
