"""Results as Markdown: each benchmark writes one section of ``docs/benchmarks.md``.

Sections sit between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` markers, so a run of one
benchmark (or of the chaos script) replaces its own section and leaves the others as they were.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
ORDER = (
    "machine",
    "pipeline",
    "idle",
    "polling",
    "ingest",
    "fairness",
    "api",
    "archive",
    "chaos",
)

DOC_HEADER = """# Benchmarks

Numbers measured on the machine described below by `make bench` (`python -m bench.run`) and
`make chaos` (`python -m bench.chaos`). Each section names the exact command that produced it
and is rewritten only by that benchmark (each section sits between two HTML comments named
after it); the code is under `bench/`. Every benchmark starts its own processes on 127.0.0.1:
a fresh PostgreSQL database in the local server (dropped afterwards), a private embedded Redis,
and `mcjobs api`, `worker`, `beat` and `sim` as subprocesses, and stops them when it ends.
Nothing reaches the internet.

    python -m bench.run                                # all five, full size, medians of 3 runs
    python -m bench.run --only pipeline,ingest --quick # a fast look (printed, not written)
    python -m bench.run --only pipeline --jobs 5000 --runs 5
    python -m bench.chaos --jobs 2000                  # exits 1 if an invariant fails

How to read them:

- The machine has 2 CPUs shared by everything: the service, PostgreSQL, Redis, the simulator
  and the load generators. Absolute numbers are small-machine numbers; the ratios between
  systems measured side by side in one run are what carries over.
- *CPU per job* is the user+system time the OS reports (psutil `cpu_times()`) for the
  orchestrator's process trees, children included, over the measured interval. The simulator
  is never counted; PostgreSQL's whole-server CPU is shown apart, for information.
- The polling benchmark is a deterministic simulation over sampled durations, not a timed run.

"""


@dataclass(frozen=True)
class Goal:
    """A target from the benchmark brief and whether this run met it."""

    name: str
    value: str
    target: str
    met: bool


@dataclass
class Section:
    """One benchmark's results."""

    key: str
    title: str
    body: str
    goals: list[Goal] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(goal.met for goal in self.goals)


def fmt(value: float, digits: int = 2) -> str:
    """A number for a table: NaN as an em dash, thousands separated."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def prose(text: str) -> str:
    """A paragraph written as an indented triple-quoted string, on one line."""
    return " ".join(text.split())


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def goals_table(goals: Sequence[Goal]) -> str:
    rows = [[g.name, g.value, g.target, "met" if g.met else "**not met**"] for g in goals]
    return table(["goal", "measured", "target", ""], rows)


def command_line() -> str:
    """How this process was started, as a shell command a reader can paste."""
    module = sys.argv[0]
    if module.endswith(".py") and "bench" in Path(module).parts:
        module = "-m bench." + Path(module).stem
    return "python " + " ".join([module, *map(shlex.quote, sys.argv[1:])])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_facts(versions: dict[str, str]) -> dict[str, str]:
    """What the numbers depend on: CPUs, memory and the software versions."""
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu_model(),
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        **versions,
    }


def machine_section(facts: dict[str, str]) -> Section:
    rows = [[k, v] for k, v in facts.items()]
    body = table(["", ""], rows)
    return Section("machine", "Machine", body)


def render(section: Section, *, command: str) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"## {section.title}", "", f"Command: `{command}` — run {stamp}.", "", section.body]
    if section.goals:
        parts += ["", goals_table(section.goals)]
    return "\n".join(parts).rstrip() + "\n"


def write_sections(sections: Sequence[Section], *, command: str, path: Path = DOC_PATH) -> None:
    """Replace each section's block where it stands, keeping the prose between blocks; a block
    the document lacks is added after the last block that comes before it in `ORDER`."""
    text = path.read_text() if path.exists() else DOC_HEADER
    for section in sections:
        block = _block(section.key, render(section, command=command))
        found = _block_pattern(section.key).search(text)
        if found:
            text = text[: found.start()] + block + text[found.end() :]
            continue
        earlier = ORDER[: ORDER.index(section.key)] if section.key in ORDER else ORDER
        anchors = [m for k in earlier if (m := _block_pattern(k).search(text))]
        at = max((m.end() for m in anchors), default=len(text.rstrip()))
        text = text[:at].rstrip() + "\n\n" + block + "\n\n" + text[at:].lstrip()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip() + "\n")


def _block(key: str, body: str) -> str:
    return f"<!-- bench:{key} -->\n{body.rstrip()}\n<!-- /bench:{key} -->"


def _block_pattern(key: str) -> re.Pattern[str]:
    return re.compile(rf"<!-- bench:{key} -->\n.*?<!-- /bench:{key} -->", re.S)
