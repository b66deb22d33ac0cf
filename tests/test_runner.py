"""The worker's task threads on their own (no cluster): interruption bookkeeping."""

from __future__ import annotations

import asyncio
import operator
import threading

from distml.protocol.serialize import TaskCodec
from distml.worker.runner import TaskRunner


def outcomes_of(script) -> list[str]:
    """Run ``script(runner, finished)`` on a 1-thread runner; the outcome of each finished
    task, in order. ``finished(n)`` waits until ``n`` tasks have finished."""
    async def main():
        loop = asyncio.get_running_loop()
        outcomes: list[str] = []
        changed = asyncio.Event()

        def on_events(events):
            outcomes.extend(e[2] for e in events if e[0] == "finished")
            changed.set()

        async def finished(n):
            while len(outcomes) < n:
                changed.clear()
                await asyncio.wait_for(changed.wait(), 10)

        runner = TaskRunner(1, loop, on_events, inline_bytes=1000)
        try:
            await script(runner, finished)
        finally:
            runner.stop()
        return outcomes

    return asyncio.run(main())


PAYLOAD = TaskCodec().dumps(operator.add, (1, 2), None)


def test_interrupting_a_finished_key_does_not_skip_its_next_run():
    async def script(runner, finished):
        runner.submit("k", PAYLOAD, {})
        await finished(1)
        runner.interrupt("k")  # it has finished: there is nothing to stop
        runner.submit("k", PAYLOAD, {})  # run again (the scheduler wanted it again)
        await finished(2)

    assert outcomes_of(script) == ["ok", "ok"]


#: Events that tasks wait on, by name (a task is pickled by reference to a module function).
GATES: dict[str, threading.Event] = {}


def wait_at(gate: str) -> bool:
    return GATES.setdefault(gate, threading.Event()).wait(10)


def gate_task(gate: str) -> list:
    GATES[gate] = threading.Event()
    return TaskCodec().dumps(wait_at, (gate,), None)


def test_interrupting_a_queued_key_skips_it():
    async def script(runner, finished):
        runner.submit("busy", gate_task("release"), {})
        runner.submit("k", PAYLOAD, {})  # waits behind "busy" on the one thread
        runner.interrupt("k")
        GATES["release"].set()
        await finished(2)

    assert outcomes_of(script) == ["ok", "interrupted"]


def test_a_finish_and_the_next_start_reach_the_loop_together():
    """With a task waiting, the thread hands over the end of one task and the start of the
    next at once: one wake-up of the loop (and one message to the scheduler), not two."""
    async def main():
        loop = asyncio.get_running_loop()
        seen = asyncio.Event()
        runner = TaskRunner(1, loop, lambda events: loop.call_soon(seen.set), inline_bytes=1000)
        handed: list[list[tuple]] = []
        post = runner._post

        def recording_post(*events):
            handed.append([e[:2] for e in events])
            return post(*events)

        runner._post = recording_post
        try:
            runner.submit("busy", gate_task("hold"), {})
            runner.submit("next", PAYLOAD, {})
            GATES["hold"].set()
            while [("finished", "next")] not in handed:
                seen.clear()
                await asyncio.wait_for(seen.wait(), 10)
        finally:
            runner.stop()
        return handed

    assert asyncio.run(main()) == [[("started", "busy")],
                                   [("finished", "busy"), ("started", "next")],
                                   [("finished", "next")]]  # nothing waits: handed over at once
