"""Job specs from a file for `mcjobs batch submit`: JSON Lines, a JSON list, or CSV.

JSON Lines: one spec object per line; blank lines and lines starting with ``#`` are skipped.
CSV: a header row naming spec fields — ``model``, ``action``, ``prompt``, ``webhook_url``,
``priority``, ``deadline_seconds``, ``images`` (URLs separated by spaces), ``source_job_id``,
``source_index``, ``params`` / ``metadata`` (a JSON object), ``params.<name>`` (the cell is read
as JSON when it parses, so ``2`` is a number and ``16:9`` a string) and ``metadata.<name>``.
Any other column is kept as metadata, so an ``sku`` or ``filename`` column travels with its job
and can name its downloads. Empty cells are left out.

Every spec remembers the line it came from, so an API error on ``jobs[17]`` can be shown as
"line 19".
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

PLAIN_COLUMNS: Final = frozenset({"model", "action", "prompt", "webhook_url"})
INT_COLUMNS: Final = frozenset({"priority", "source_index"})
FLOAT_COLUMNS: Final = frozenset({"deadline_seconds"})
JSON_COLUMNS: Final = frozenset({"params", "metadata"})


class SpecFileError(ValueError):
    """A file that cannot be read as specs; the message names the file and line."""


@dataclass(frozen=True)
class SpecLine:
    line: int
    spec: dict[str, Any]


def coerce(value: str) -> Any:
    """A command-line or CSV value: JSON when it parses as JSON, else the text itself."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def parse_assignments(items: Iterable[str], *, what: str, typed: bool = True) -> dict[str, Any]:
    """``["aspect=16:9", "stylize=200"]`` → ``{"aspect": "16:9", "stylize": 200}``."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise SpecFileError(f"{what} {item!r} is not NAME=VALUE")
        out[name.strip()] = coerce(value) if typed else value
    return out


def read_specs(path: str) -> list[SpecLine]:
    """Specs from `path` (``-`` reads JSON Lines from stdin), each with its line number."""
    if path == "-":
        return _json_lines(sys.stdin.read(), "<stdin>")
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise SpecFileError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SpecFileError(f"{path}: not UTF-8 text") from None
    suffix = file.suffix.lower()
    if suffix == ".csv":
        return _csv(text, path)
    if suffix == ".json":
        return _json_list(text, path)
    return _json_lines(text, path)


def _json_lines(text: str, name: str) -> list[SpecLine]:
    specs: list[SpecLine] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            spec = json.loads(line)
        except ValueError as exc:
            raise SpecFileError(f"{name} line {number}: not JSON ({exc})") from None
        if not isinstance(spec, dict):
            raise SpecFileError(f"{name} line {number}: a spec must be a JSON object")
        specs.append(SpecLine(number, spec))
    return specs


def _json_list(text: str, name: str) -> list[SpecLine]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SpecFileError(f"{name}: not JSON ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("jobs"), list):
        data = data["jobs"]
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise SpecFileError(f"{name}: expected a JSON list of spec objects")
    return [SpecLine(n, item) for n, item in enumerate(data, start=1)]


def _csv(text: str, name: str) -> list[SpecLine]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise SpecFileError(f"{name}: no header row")
    specs: list[SpecLine] = []
    for row in reader:
        number = reader.line_num
        try:
            spec = _csv_spec(row, reader.fieldnames)
        except ValueError as exc:
            raise SpecFileError(f"{name} line {number}: {exc}") from None
        if spec:
            specs.append(SpecLine(number, spec))
    return specs


def _csv_spec(row: dict[str, str | None], columns: Sequence[str]) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    params: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    source: dict[str, Any] = {}
    for column in columns:
        cell = (row.get(column) or "").strip()
        name = column.strip()
        if not cell or not name:
            continue
        if name in PLAIN_COLUMNS:
            spec[name] = cell
        elif name in INT_COLUMNS:
            target = source if name == "source_index" else spec
            target["index" if name == "source_index" else name] = _number(int, name, cell)
        elif name in FLOAT_COLUMNS:
            spec[name] = _number(float, name, cell)
        elif name == "source_job_id":
            source["job_id"] = cell
        elif name == "images":
            spec["images"] = [{"url": url} for url in cell.split()]
        elif name in JSON_COLUMNS:
            value = coerce(cell)
            if not isinstance(value, dict):
                raise ValueError(f"column {name} must hold a JSON object")
            (params if name == "params" else metadata).update(value)
        elif name.startswith("params."):
            params[name.removeprefix("params.")] = coerce(cell)
        elif name.startswith(("metadata.", "meta.")):
            metadata[name.split(".", 1)[1]] = cell
        else:
            metadata[name] = cell
    if params:
        spec["params"] = params
    if metadata:
        spec["metadata"] = metadata
    if source:
        spec["source"] = source
    return spec


def _number(kind: type[int] | type[float], column: str, cell: str) -> int | float:
    try:
        return kind(cell)
    except ValueError:
        raise ValueError(f"column {column} must be a number, got {cell!r}") from None
