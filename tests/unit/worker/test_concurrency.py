"""`settle_as_completed`: every answer is written exactly once, answers landing together share
a write, and a failed write still records every answer that was on the wire."""

from __future__ import annotations

import asyncio

import pytest

from worker.concurrency import settle_as_completed


async def _answer(value: int, gate: asyncio.Event) -> int:
    await gate.wait()
    return value


def test_answers_landing_close_together_share_one_write_that_waits_no_longer_than_needed() -> None:
    async def main() -> tuple[list[list[int]], float]:
        first, rest = asyncio.Event(), asyncio.Event()
        writes: list[list[int]] = []

        async def write(results: list[int]) -> None:
            writes.append(sorted(results))

        async def land_the_rest() -> None:
            await asyncio.sleep(0.05)
            rest.set()

        calls = [_answer(0, first)] + [_answer(n, rest) for n in range(1, 200)]
        first.set()
        helper = asyncio.ensure_future(land_the_rest())
        loop = asyncio.get_running_loop()
        started = loop.time()
        written = await settle_as_completed(calls, write, coalesce_seconds=60.0)
        await helper
        assert written == 200
        return writes, loop.time() - started

    writes, seconds = asyncio.run(main())
    assert writes == [list(range(200))]
    # the wait for more answers ended when the last one landed, not when its 60 s ran out
    assert seconds < 30


def test_a_failed_write_still_records_answers_in_flight_and_those_landing_meanwhile() -> None:
    async def main() -> list[list[int]]:
        first, during, late = asyncio.Event(), asyncio.Event(), asyncio.Event()
        writes: list[list[int]] = []

        async def write(results: list[int]) -> None:
            writes.append(sorted(results))
            if len(writes) == 1:
                during.set()  # these answers land while the first write is failing
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                late.set()  # and these are still on the wire when it has failed
                raise RuntimeError("database gone")

        calls = [_answer(0, first)]
        calls += [_answer(n, during) for n in range(1, 4)]
        calls += [_answer(n, late) for n in range(4, 7)]
        first.set()
        with pytest.raises(RuntimeError):
            await settle_as_completed(calls, write, coalesce_seconds=0)
        return writes

    writes = asyncio.run(main())
    assert writes[0] == [0]
    assert sorted(n for batch in writes[1:] for n in batch) == [1, 2, 3, 4, 5, 6]
