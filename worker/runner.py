"""Starting the worker and beat processes (what ``mcjobs worker`` / ``mcjobs beat`` call)."""

from __future__ import annotations

import os

from core import nudge


def run_worker(
    concurrency: int | None = None, loglevel: str = "INFO", hostname: str | None = None
) -> None:
    """A prefork worker consuming the tick queue; ``concurrency`` defaults to the CPU count.

    ``hostname`` is the Celery node name; the default is unique per process on a machine, so
    several workers on one host never collide in ``celery inspect`` or Flower.
    """
    from worker.celery_app import app

    argv = [
        "worker",
        "--queues",
        nudge.TICK_QUEUE,
        "--pool",
        "prefork",
        "--loglevel",
        loglevel,
        # Ticks need no cluster chatter; skipping it makes start-up and shutdown quick.
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--hostname",
        hostname or f"mcjobs-{os.getpid()}@%h",
    ]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    app.worker_main(argv)


def run_beat(loglevel: str = "INFO") -> None:
    """Celery beat with the pump ticks. Run one per deployment.

    The schedule lives in memory: ticks are plain intervals and a restart loses nothing. Two
    beats by mistake are harmless: the pumps claim only due rows, so the extra ticks find nothing
    more to do (docs/scaling.md, tests/e2e/test_nodes.py).
    """
    from worker.celery_app import app

    app.start(["beat", "--loglevel", loglevel, "--scheduler", "celery.beat:Scheduler"])
