"""Faust's message delivery without four tasks a message (hfrisk.stream.worker.eager_delivery): what
the fetch loop gets back is what mode's ``wait_first`` gives, and a delivery that finishes at once
starts no task."""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys

import pytest
from faust.transport.consumer import Consumer
from mode import Service
from mode.services import WaitResults

from hfrisk.stream.worker import eager_delivery
from hfrisk.stream.worker.eager_delivery import eager_wait_first


class Fetcher(Service):
    """A mode service, as Faust's consumer is one."""


def both(scenario):
    """``scenario(wait_first, service)`` run with mode's ``wait_first`` and with the eager one: (mode's, eager)."""

    async def run(wait_first):
        service = Fetcher()
        return await scenario(lambda *coros, **kw: wait_first(service, *coros, **kw), service)

    return asyncio.run(run(eager_delivery._mode_wait_first)), asyncio.run(run(eager_wait_first))


def test_a_delivery_that_does_not_wait_gives_modes_result_and_starts_no_task():
    async def scenario(wait_first, _service):
        tasks_started = []
        loop = asyncio.get_running_loop()
        loop.set_task_factory(lambda loop, coro, **kw: tasks_started.append(1) or asyncio.Task(coro, loop=loop, **kw))
        suspend = asyncio.Event()
        delivered = []

        async def deliver():
            delivered.append("message")
            return "queued"

        started = len(tasks_started)
        other = suspend.wait()
        results = await wait_first(deliver(), other)
        await asyncio.sleep(0)  # mode's cancellation of the other argument lands
        assert inspect.getcoroutinestate(other) == inspect.CORO_CLOSED  # not left to warn "never awaited"
        return results, delivered, len(tasks_started) - started

    (mode_results, mode_delivered, mode_tasks), (eager_results, eager_delivered, eager_tasks) = both(scenario)
    assert mode_results.results == eager_results.results == ["queued"]
    assert mode_results.stopped is eager_results.stopped is False
    assert mode_delivered == eager_delivered == ["message"]
    assert (mode_tasks, eager_tasks) == (4, 0)  # mode: the delivery, the suspension, stopped, crashed


def test_a_delivery_that_waits_finishes_where_it_stopped():
    async def scenario(wait_first, _service):
        room, suspend, steps = asyncio.Event(), asyncio.Event(), []

        async def deliver():
            steps.append("decoded")
            await room.wait()  # a full queue
            steps.append("queued")
            return "queued"

        asyncio.get_running_loop().call_later(0.01, room.set)
        first = deliver()
        results = await wait_first(first, suspend.wait())
        return [r is first for r in results.done], results.results, results.stopped, steps

    mode, eager = both(scenario)
    assert mode == eager == ([True], ["queued"], False, ["decoded", "queued"])


def test_a_waiting_delivery_gives_way_to_a_suspended_flow_and_is_cancelled():
    async def scenario(wait_first, _service):
        suspend, steps = asyncio.Event(), []

        async def deliver():
            steps.append("decoded")
            try:
                await asyncio.Event().wait()  # a queue that never empties
            except asyncio.CancelledError:
                steps.append("cancelled")
                raise

        asyncio.get_running_loop().call_later(0.01, suspend.set)
        first = deliver()
        results = await wait_first(first, suspend.wait())
        await asyncio.sleep(0)  # let the cancellation land
        return [r is first for r in results.done], results.results, results.stopped, steps

    mode, eager = both(scenario)
    assert mode == eager == ([False], [True], False, ["decoded", "cancelled"])


def test_an_error_in_the_delivery_is_raised_and_the_other_arguments_are_left_unstarted():
    async def scenario(wait_first, _service):
        suspend = asyncio.Event()

        async def deliver():
            raise ValueError("undecodable")

        other = suspend.wait()
        with pytest.raises(ValueError, match="undecodable"):
            await wait_first(deliver(), other)
        await asyncio.sleep(0)
        return inspect.getcoroutinestate(other)

    assert both(scenario) == (inspect.CORO_CLOSED, inspect.CORO_CLOSED)


def test_a_stopped_consumer_and_non_coroutines_go_to_mode_unchanged():
    async def scenario(wait_first, service):
        flow = asyncio.Event()
        flow.set()
        one = await wait_first(flow)  # an Event, as Consumer.wait(self.can_resume_flow) passes
        service._stopped.set()
        ran = []

        async def deliver():
            ran.append(1)
            return "queued"

        stopped = await wait_first(deliver(), asyncio.Event().wait())
        return one.results, one.stopped, stopped, ran

    mode, eager = both(scenario)
    assert mode == eager
    assert mode[:3] == ([True], False, WaitResults([], [], True))


def test_the_worker_app_installs_it_on_fausts_consumer_unless_the_setting_is_off(tmp_path):
    from hfrisk.core.config import Settings
    from hfrisk.stream.worker.app import create_app

    create_app(Settings(), app_id="eager-delivery-test", web_port=0, datadir=tmp_path)
    assert Consumer.wait_first is eager_wait_first
    # Process-wide once installed, so the switched-off app is made in a fresh interpreter.
    script = (
        "from faust.transport.consumer import Consumer\n"
        "from mode.services import Service\n"
        "from hfrisk.core.config import get_settings\n"
        "from hfrisk.stream.worker.app import create_app\n"
        f"create_app(get_settings(), app_id='stock', web_port=0, datadir={str(tmp_path)!r})\n"
        "print(Consumer.wait_first is Service.wait_first)\n"
    )
    env = os.environ | {"HFRISK_STREAM__EAGER_DELIVERY": "false"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "True"
