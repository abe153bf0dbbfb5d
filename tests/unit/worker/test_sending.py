"""How a submit round is split into parts, each marked sent before its requests leave."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from worker.sending import SEND_PARTS, RoundSender


@pytest.mark.parametrize("jobs", [1, 3, SEND_PARTS, 20, 50, 200])
def test_a_round_is_split_into_at_most_eight_nearly_equal_parts(jobs: int) -> None:
    async def parts() -> list[list[str]]:
        return RoundSender([f"j{n}" for n in range(jobs)]).parts

    split = asyncio.run(parts())
    assert len(split) == min(jobs, SEND_PARTS)
    assert [job for part in split for job in part] == [f"j{n}" for n in range(jobs)]
    assert max(map(len, split)) - min(map(len, split)) <= 1


def test_the_next_part_is_marked_only_once_the_previous_one_has_left() -> None:
    async def main() -> list[tuple[str, list[str]]]:
        sender = RoundSender([f"j{n}" for n in range(16)])
        seen: list[tuple[str, list[str]]] = []

        async def mark(job_ids: list[str]) -> set[str]:
            seen.append(("mark", job_ids))
            return set(job_ids)

        async def call(job_id: str) -> None:
            if await sender.my_turn(job_id):
                seen.append(("left", [job_id]))
                sender.left(job_id)

        await asyncio.gather(sender.run(mark), *(call(f"j{n}") for n in range(16)))
        return seen

    seen = asyncio.run(main())
    marks = [n for n, (what, _) in enumerate(seen) if what == "mark"]
    assert len(marks) == 8
    for before, after in itertools.pairwise(marks):
        # between two marks, exactly the jobs of the first one left
        assert [job for _, jobs in seen[before + 1 : after] for job in jobs] == seen[before][1]


def test_a_stopped_round_sends_nothing_more_and_a_failed_mark_sends_nothing() -> None:
    async def main() -> tuple[list[bool], type[BaseException] | None]:
        sender = RoundSender([f"j{n}" for n in range(8)])

        async def mark(job_ids: list[str]) -> set[str]:
            raise ConnectionError("database gone")

        turns = [asyncio.ensure_future(sender.my_turn(f"j{n}")) for n in range(8)]
        failure: type[BaseException] | None = None
        try:
            await sender.run(mark)
        except ConnectionError as exc:
            failure = type(exc)
        return list(await asyncio.gather(*turns)), failure

    turns, failure = asyncio.run(main())
    assert turns == [False] * 8
    assert failure is ConnectionError
