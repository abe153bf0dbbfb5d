"""CPU and memory of process trees, read from the OS with psutil.

A tree's CPU total is the user+system time of every live process in it plus the time of the
children each one has already reaped, so a Celery pool child that exits mid-run still counts:
its time moves from the live child into its parent's ``children_*`` fields.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import psutil


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of ``pid`` and all its descendants, reaped ones included."""
    total = 0.0
    for proc in _tree(pid):
        try:
            t = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def trees_cpu_seconds(pids: Iterable[int]) -> float:
    """The sum of `tree_cpu_seconds` over several roots."""
    return sum(tree_cpu_seconds(pid) for pid in pids)


@dataclass(frozen=True)
class TreeMemory:
    """Resident memory of one tree: the sum over its processes and its largest process."""

    rss_total: int
    uss_total: int
    rss_largest: int


def tree_memory(pid: int) -> TreeMemory:
    """RSS (and USS, which does not double-count pages a forked child shares) of a tree."""
    rss = uss = largest = 0
    for proc in _tree(pid):
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
        rss += info.rss
        uss += info.uss
        largest = max(largest, info.rss)
    return TreeMemory(rss_total=rss, uss_total=uss, rss_largest=largest)


class PeakMemory:
    """The largest `TreeMemory` seen across samples, per named tree."""

    def __init__(self) -> None:
        self.peaks: dict[str, TreeMemory] = {}

    def sample(self, name: str, pid: int) -> None:
        now = tree_memory(pid)
        old = self.peaks.get(name)
        if old is None:
            self.peaks[name] = now
            return
        self.peaks[name] = TreeMemory(
            rss_total=max(old.rss_total, now.rss_total),
            uss_total=max(old.uss_total, now.uss_total),
            rss_largest=max(old.rss_largest, now.rss_largest),
        )


def postgres_server_cpu_seconds() -> float:
    """CPU of the local PostgreSQL server tree(s), ended backends included (informative only:
    the server is shared with anything else running on this machine)."""
    roots: list[int] = []
    for proc in psutil.process_iter(["name", "ppid"]):
        if proc.info["name"] != "postgres":
            continue
        try:
            parent_name = psutil.Process(proc.info["ppid"]).name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            parent_name = ""
        if parent_name != "postgres":
            roots.append(proc.pid)
    return trees_cpu_seconds(roots)
