"""Job specs the benchmarks submit: one per model family, each with a prompt unique to the run,
so the simulator's per-prompt submit counter can tell a duplicate upstream submit apart."""

from __future__ import annotations

from itertools import cycle, islice
from typing import Any

FIRST_FRAME = [{"url": "https://frames.example.invalid/first-frame.png"}]  # never fetched

#: (model, extra spec fields) covering every provider family the service serves.
ALL_FAMILIES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("mj-v7", {"params": {"aspect": "16:9"}}),
    ("flux-2-pro", {}),
    ("flux-kontext", {}),
    ("z-image-turbo", {}),
    ("doubao-seedream-4-5-251128", {}),
    ("grok-imagine-image-2.0", {}),
    ("mj-video-v1", {"images": FIRST_FRAME}),
    ("grok-imagine-video-1.5-preview", {"images": FIRST_FRAME, "params": {"duration": 5}}),
)

#: Still images only: what a throughput run moves (videos only change the durations).
IMAGE_FAMILIES: tuple[tuple[str, dict[str, Any]], ...] = ALL_FAMILIES[:6]


def job_specs(
    count: int,
    *,
    tag: str,
    families: tuple[tuple[str, dict[str, Any]], ...] = IMAGE_FAMILIES,
    webhook_url: str | None = None,
    start: int = 0,
) -> list[dict[str, Any]]:
    """``count`` specs cycling through ``families``; prompt ``"<tag> #<n>"`` is unique."""
    specs: list[dict[str, Any]] = []
    for n, (model, extra) in enumerate(islice(cycle(families), count), start=start):
        spec: dict[str, Any] = {"model": model, "prompt": f"{tag} #{n}", **extra}
        if webhook_url is not None:
            spec["webhook_url"] = webhook_url
        specs.append(spec)
    return specs


def reference_specs(count: int, *, tag: str) -> list[dict[str, Any]]:
    """The same image mix for the reference design (it knows no images or webhooks)."""
    return [
        {"model": s["model"], "prompt": s["prompt"], "params": s.get("params", {})}
        for s in job_specs(count, tag=tag)
    ]
