"""Saving a batch's results: every result file under a readable name, and `manifest.csv`.

A file is named from a template over the job (``{id}``, ``{n}`` — the job's 1-based place in
the batch — ``{model}``, ``{action}`` and any metadata key, e.g. ``{sku}-{n}``), made safe for
file systems (never starting with ``-`` or ``.``); a job with several images gets ``_1``, ``_2``…
Files already on disk are kept, so a second run only fetches what is missing. A result that
the service archived (``result.files``) is fetched from our own ``GET /v1/files/{id}`` with the
API key (on an S3 store that answers with a presigned redirect, which httpx follows without the
key); the upstream URL is the fallback for an output with no stored copy. Upstream URLs are
fetched *without* the API key: they live on storage hosts that need none, and the key must not
travel to them.

The extension is chosen from a short list of image and video types only: the response's
content type when it is one of them, else the URL's suffix when it is one of them, else the
neutral ``.bin``. A storage host can therefore never make the CLI write a ``.sh``, ``.exe`` or
``.html`` file; an unexpected type is still saved (it was paid for), just not as something a
double-click would run.

`manifest.csv` has one row per job: id, place, status, files, cost, error and metadata. Text that
a spreadsheet would read as a formula (starting with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return) is written with a leading ``'``, so opening the manifest runs nothing.
"""

from __future__ import annotations

import csv
import json
import re
import string
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

MANIFEST: Final = "manifest.csv"
MANIFEST_COLUMNS: Final = (
    "job_id",
    "n",
    "status",
    "files",
    "cost_points",
    "model",
    "action",
    "error",
    "metadata",
)
# The only extensions a result file can get: results are images and videos.
MEDIA_TYPES: Final = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/pjpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "image/avif": ".avif",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
}
MEDIA_SUFFIXES: Final = frozenset({*MEDIA_TYPES.values(), ".jpeg"})
NEUTRAL_SUFFIX: Final = ".bin"
# What spreadsheets treat as the start of a formula (OWASP "CSV injection").
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_STEM: Final = 120


def result_urls(job: Mapping[str, Any]) -> list[str]:
    """The result file URLs of a succeeded job, images first, then every video clip once."""
    result = job.get("result") or {}
    urls = [url for url in result.get("image_urls") or [] if isinstance(url, str)]
    videos = [url for url in result.get("video_urls") or [] if isinstance(url, str)]
    if isinstance(result.get("video_url"), str):
        videos.insert(0, result["video_url"])
    urls.extend(dict.fromkeys(videos))
    return urls


def result_sources(job: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    """Each output as (stored file id or None, upstream URL), in output order."""
    result = job.get("result") or {}
    stored = {
        entry.get("index"): entry.get("id")
        for entry in result.get("files") or []
        if isinstance(entry, Mapping) and isinstance(entry.get("id"), str)
    }
    image_urls = [url for url in result.get("image_urls") or [] if isinstance(url, str)]
    videos = result.get("video_urls") or (
        [result["video_url"]] if isinstance(result.get("video_url"), str) else []
    )
    # indexes as the service numbers outputs: images, then the video URL(s) as listed
    indexed = [*image_urls, *(url for url in videos if isinstance(url, str))]
    ours = {url: stored.get(index) for index, url in enumerate(indexed)}
    return [(ours.get(url), url) for url in result_urls(job)]


def _safe(text: str) -> str:
    # a leading "-" would read as an option to shell commands, a leading "." hides the file
    cleaned = _UNSAFE.sub("_", text).lstrip("-._").rstrip("._")
    return cleaned[:MAX_STEM] or "file"


def _template_fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def validate_template(template: str) -> None:
    """`ValueError` when the name template is not a plain ``{field}`` template."""
    try:
        fields = _template_fields(template)
        template.format_map({name: "x" for name in fields})
    except (ValueError, IndexError, KeyError, AttributeError) as exc:
        raise ValueError(f"bad name template {template!r}: {exc}") from None


def file_stem(template: str, job: Mapping[str, Any], n: int) -> str:
    """The file name stem for a job; fields the job lacks fall back to its id."""
    values: dict[str, Any] = {
        key: value
        for key, value in (job.get("metadata") or {}).items()
        if isinstance(value, str | int | float)
    }
    values.update(id=job["id"], n=n, model=job.get("model", ""), action=job.get("action", ""))
    if not _template_fields(template) <= set(values):
        return _safe(str(job["id"]))
    return _safe(template.format_map(values))


def file_suffix(url: str, content_type: str | None) -> str:
    """The extension for a downloaded file: an image or video type's, else ``.bin``."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type in MEDIA_TYPES:
        return MEDIA_TYPES[media_type]
    suffix = PurePosixPath(urlsplit(url).path).suffix.lower()
    return suffix if suffix in MEDIA_SUFFIXES else NEUTRAL_SUFFIX


def manifest_cell(value: object) -> object:
    """`value` as a CSV cell a spreadsheet shows as text: formula starts get a leading ``'``."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


@dataclass
class JobFiles:
    """What was saved for one job."""

    job: Mapping[str, Any]
    n: int
    files: list[str] = field(default_factory=list)
    error: str | None = None


def _fetch(client: httpx.Client, url: str, stem: Path, attempts: int = 3) -> Path:
    existing = [p for p in stem.parent.glob(stem.name + ".*") if not p.name.endswith(".part")]
    if existing and existing[0].stat().st_size > 0:
        return existing[0]
    last: Exception | None = None
    for _ in range(attempts):
        try:
            with client.stream("GET", url) as response:
                response.raise_for_status()
                target = stem.with_name(
                    stem.name + file_suffix(url, response.headers.get("content-type"))
                )
                part = target.with_name(target.name + ".part")
                with part.open("wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
            part.replace(target)
            return target
        except (httpx.HTTPError, OSError) as exc:
            last = exc
    raise RuntimeError(f"{type(last).__name__}: {last}") from None


def _job_files(
    client: httpx.Client,
    entry: JobFiles,
    stem: str,
    directory: Path,
    stored: httpx.Client | None = None,
) -> JobFiles:
    sources = result_sources(entry.job)
    for index, (file_id, url) in enumerate(sources, start=1):
        name = f"{stem}_{index}" if len(sources) > 1 else stem
        saved: Path | None = None
        if file_id is not None and stored is not None:
            try:
                saved = _fetch(stored, f"/v1/files/{file_id}", directory / name)
            except RuntimeError:
                saved = None  # our copy is unavailable: the upstream link may still work
        if saved is None:
            try:
                saved = _fetch(client, url, directory / name)
            except RuntimeError as exc:
                entry.error = f"download failed: {exc}"
                continue
        entry.files.append(saved.name)
    return entry


def download_results(
    jobs: Sequence[Mapping[str, Any]],
    directory: Path,
    *,
    template: str = "{id}",
    concurrency: int = 8,
    on_done: Callable[[JobFiles], None] | None = None,
    client: httpx.Client | None = None,
    stored: httpx.Client | None = None,
) -> list[JobFiles]:
    """Save every succeeded job's files into `directory` and write its `manifest.csv`.

    `jobs` are Job views in batch order. Returns one `JobFiles` per job, in the same order.
    ``stored`` is a client for our API (its base URL and key): archived copies come from it,
    upstream URLs from ``client``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    entries = [JobFiles(job, n) for n, job in enumerate(jobs, start=1)]
    stems: dict[int, str] = {}
    used: set[str] = set()
    for entry in entries:
        stem = file_stem(template, entry.job, entry.n)
        if stem in used:
            stem = _safe(f"{stem}-{entry.job['id']}")
        used.add(stem)
        stems[entry.n] = stem
    owned = client is None
    http = client or httpx.Client(timeout=120.0, follow_redirects=True, trust_env=False)
    try:
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            futures = [
                pool.submit(_job_files, http, entry, stems[entry.n], directory, stored)
                for entry in entries
                if entry.job.get("status") == "succeeded"
            ]
            for future in futures:
                done = future.result()
                if on_done is not None:
                    on_done(done)
    finally:
        if owned:
            http.close()
    write_manifest(directory / MANIFEST, entries)
    return entries


def write_manifest(path: Path, entries: Sequence[JobFiles]) -> None:
    """One row per job, in batch order."""
    part = path.with_name(path.name + ".part")
    with part.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(MANIFEST_COLUMNS)
        for entry in entries:
            job = entry.job
            error = job.get("error") or {}
            message = entry.error or (
                f"{error.get('code')}: {error.get('message', '')}" if error else ""
            )
            row = [
                job["id"],
                entry.n,
                job.get("status", ""),
                ";".join(entry.files),
                "" if job.get("cost_points") is None else job["cost_points"],
                job.get("model", ""),
                job.get("action", ""),
                message,
                json.dumps(job.get("metadata") or {}, ensure_ascii=False, sort_keys=True),
            ]
            writer.writerow([manifest_cell(value) for value in row])
    part.replace(path)
