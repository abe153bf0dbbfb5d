"""Hand-made SVG charts for the dashboard: Python computes every rectangle and label, the
templates only draw them, so there is no front-end build and no chart library.

Each chart is a plain record of shapes in a fixed viewBox; every bar carries a `title` (the
tooltip) and data attributes naming what it counts, which the browser test reads.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from core.stats import Latency, Points, Throughput
from core.tables import JOB_STATUSES, TERMINAL_STATUSES

WIDTH, HEIGHT = 640, 220
WIDE = 1280
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 34


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str
    series: str
    value: float


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str
    anchor: str = "middle"


@dataclass(frozen=True)
class LegendItem:
    css: str
    name: str
    value: str


@dataclass
class Chart:
    """What one `<svg>` shows; `empty` says there was nothing to draw."""

    name: str
    bars: list[Bar] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    gridlines: list[float] = field(default_factory=list)
    legend: list[LegendItem] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def empty(self) -> bool:
        return not self.bars


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above `value` (an axis top)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return float(step * power)
    return float(10 * power)


def _axis(chart: Chart, top_value: float, unit: str = "") -> float:
    """Draw the value axis; returns pixels per unit."""
    plot_height = chart.height - TOP - BOTTOM
    for fraction in (0.0, 0.5, 1.0):
        y = chart.height - BOTTOM - fraction * plot_height
        chart.gridlines.append(y)
        chart.labels.append(Label(LEFT - 6, y + 4, _short(top_value * fraction) + unit, "end"))
    return plot_height / top_value


def _short(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}" if value == int(value) else f"{value:.1f}"


def throughput_chart(
    throughput: Throughput, *, since: dt.datetime, until: dt.datetime, bucket_seconds: int
) -> Chart:
    """Stacked bars of jobs ended per bucket, one colour per final status."""
    chart = Chart("throughput", width=WIDE)
    start = int(since.timestamp()) // bucket_seconds * bucket_seconds
    buckets = max(1, math.ceil((until.timestamp() - start) / bucket_seconds))
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    totals: dict[str, int] = defaultdict(int)
    for point in throughput.points:
        index = (int(point.at.timestamp()) - start) // bucket_seconds
        if 0 <= index < buckets:
            slot = counts[index]
            slot[point.status] = slot.get(point.status, 0) + point.count
            totals[point.status] += point.count
    chart.legend = [
        LegendItem(f"s-{status}", status, f"{totals.get(status, 0):,}")
        for status in TERMINAL_STATUSES
    ]
    if not counts:
        return chart
    scale = _axis(chart, nice_ceiling(max(sum(slot.values()) for slot in counts.values())))
    slot_width = (chart.width - LEFT - RIGHT) / buckets
    for index, slot in sorted(counts.items()):
        y = float(chart.height - BOTTOM)
        at = dt.datetime.fromtimestamp(start + index * bucket_seconds, dt.UTC)
        for status in TERMINAL_STATUSES:
            n = slot.get(status, 0)
            if not n:
                continue
            height = n * scale
            y -= height
            chart.bars.append(
                Bar(
                    x=LEFT + index * slot_width + slot_width * 0.1,
                    y=y,
                    width=max(1.0, slot_width * 0.8),
                    height=height,
                    css=f"s-{status}",
                    title=f"{at:%H:%M} UTC: {n:,} {status}",
                    series=status,
                    value=n,
                )
            )
    for fraction, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end")):
        at = dt.datetime.fromtimestamp(start + fraction * buckets * bucket_seconds, dt.UTC)
        x = LEFT + fraction * (chart.width - LEFT - RIGHT)
        chart.labels.append(Label(x, chart.height - 12, f"{at:%m-%d %H:%M} UTC", anchor))
    return chart


def points_chart(points: Points, *, models_shown: int = 6) -> Chart:
    """Stacked bars of points spent per UTC day, one colour per model (the rest as "other")."""
    chart = Chart("points")
    ranked = [m.model for m in points.by_model]
    named = ranked[:models_shown]
    css = {model: f"m{i}" for i, model in enumerate(named)}
    per_day: dict[dt.date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in points.by_day_model:
        series = row.model if row.model in css else "other"
        per_day[row.day][series] += row.points
    chart.legend = [
        LegendItem(css[m.model], m.model, f"{m.points:,}") for m in points.by_model[:models_shown]
    ]
    if len(ranked) > models_shown:
        rest = sum(m.points for m in points.by_model[models_shown:])
        chart.legend.append(LegendItem("m-other", "other", f"{rest:,}"))
    if not per_day:
        return chart
    days = sorted(per_day)
    scale = _axis(chart, nice_ceiling(max(sum(d.values()) for d in per_day.values())))
    slot_width = (chart.width - LEFT - RIGHT) / len(days)
    for index, day in enumerate(days):
        y = float(chart.height - BOTTOM)
        for series in [*named, "other"]:
            value = per_day[day].get(series, 0)
            if not value:
                continue
            height = value * scale
            y -= height
            chart.bars.append(
                Bar(
                    x=LEFT + index * slot_width + slot_width * 0.15,
                    y=y,
                    width=slot_width * 0.7,
                    height=height,
                    css=css.get(series, "m-other"),
                    title=f"{day.isoformat()}: {value:,} points on {series}",
                    series=series,
                    value=value,
                )
            )
        chart.labels.append(
            Label(LEFT + (index + 0.5) * slot_width, chart.height - 12, f"{day:%m-%d}")
        )
    return chart


def latency_chart(latency: Latency, measure: str) -> Chart:
    """Grouped bars of p50/p95/p99 seconds per provider, for `queue_wait` or `upstream`."""
    chart = Chart(f"latency-{measure}")
    by_provider = latency.queue_wait if measure == "queue_wait" else latency.upstream
    quantiles = ("p50", "p95", "p99")
    chart.legend = [LegendItem(f"q-{q}", q, "") for q in quantiles]
    if not by_provider:
        return chart
    top = nice_ceiling(max(p.p99 for p in by_provider.values()))
    scale = _axis(chart, top, "s")
    providers = sorted(by_provider)
    slot_width = (chart.width - LEFT - RIGHT) / len(providers)
    bar_width = slot_width * 0.8 / len(quantiles)
    for index, provider in enumerate(providers):
        values = by_provider[provider]
        for q_index, q in enumerate(quantiles):
            seconds = float(getattr(values, q))
            height = seconds * scale
            chart.bars.append(
                Bar(
                    x=LEFT + index * slot_width + slot_width * 0.1 + q_index * bar_width,
                    y=chart.height - BOTTOM - height,
                    width=bar_width * 0.9,
                    height=height,
                    css=f"q-{q}",
                    title=f"{provider} {q}: {seconds:g} s over {values.count:,} jobs",
                    series=f"{provider}:{q}",
                    value=seconds,
                )
            )
        chart.labels.append(Label(LEFT + (index + 0.5) * slot_width, chart.height - 12, provider))
    return chart


def status_mix(by_status: Mapping[str, int]) -> Chart:
    """One 100 % bar split by status: what the window's jobs are doing or became."""
    chart = Chart("status-mix", height=44)
    total = sum(by_status.values())
    chart.legend = [
        LegendItem(f"s-{status}", status, f"{by_status.get(status, 0):,}")
        for status in JOB_STATUSES
    ]
    if not total:
        return chart
    x = 0.0
    for status in JOB_STATUSES:
        n = by_status.get(status, 0)
        if not n:
            continue
        width = n / total * chart.width
        chart.bars.append(
            Bar(
                x=x,
                y=4,
                width=width,
                height=36,
                css=f"s-{status}",
                title=f"{status}: {n:,} ({n / total:.0%})",
                series=status,
                value=n,
            )
        )
        x += width
    return chart


def progress_percent(done: int, total: int) -> float:
    return 0.0 if total <= 0 else round(min(100.0, 100.0 * done / total), 1)


def shares(values: Sequence[int]) -> list[float]:
    """Percentages of each value in their sum (all zero for an empty sum)."""
    total = sum(values)
    return [0.0 if not total else 100.0 * v / total for v in values]
