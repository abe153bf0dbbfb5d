"""The simulated MetaChat service: auth, limits, faults, submits, polls, account and files.

Framework-free: every method takes plain values and returns a :class:`SimReply`; ``app.py``
only translates HTTP to and from these calls.
"""

from __future__ import annotations

import hmac
import json
import random
import threading
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sim import replies
from sim.catalogue import (
    FLUX_MODELS,
    LEGACY_FLUX_PATHS,
    RESULT_FAMILIES,
    SUBMIT_ROUTES,
    Family,
    Output,
    SubmitRoute,
)
from sim.clock import Clock, SystemClock
from sim.config import SimConfig
from sim.faults import Fault, TokenBucket, draw_fault
from sim.openai import LlmHost
from sim.replies import SimReply
from sim.stats import SimStats
from sim.storage import file_names, file_url, mp4_bytes, png_bytes
from sim.submits import PARAMS_REFUSAL, Refusal, parse_submit
from sim.tasks import NUMERIC_STATUS, SimTask, TaskBook, TaskStatus, plan_task, price_of

EXPIRED_XML = b"<Error><Code>AccessDenied</Code><Message>Request has expired.</Message></Error>"
MISSING_XML = (
    b"<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>"
)
XML = "application/xml"
MALFORMED_PAGE = b"<html><body>OK</body></html>"


class Simulator:
    """All simulator state behind one lock; safe to read from a test thread while serving."""

    def __init__(self, config: SimConfig, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self._lock = threading.RLock()
        self.config = config
        self.llm = LlmHost(self)
        self.reset()

    # --- admin -----------------------------------------------------------------------------

    def reset(self, config: SimConfig | None = None) -> None:
        """Forget every task and counter; restart the random streams and the balance."""
        with self._lock:
            if config is not None:
                self.config = config
            cfg = self.config
            self.rng = random.Random(f"{cfg.seed}:requests")
            self.book = TaskBook(cfg.starting_balance)
            self.stats = SimStats()
            self.bucket = TokenBucket(cfg.rate_limit_rps, cfg.rate_limit_burst, self.clock.now())
            self._numbers = 0
            self.llm.reset()

    def configure(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a partial config change; the extra key ``balance`` sets the current balance."""
        with self._lock:
            changes = dict(changes)
            balance = changes.pop("balance", None)
            if balance is not None and (isinstance(balance, bool) or not isinstance(balance, int)):
                raise ValueError("balance must be an integer")
            self.config = self.config.patched(changes)
            self.bucket.reconfigure(
                self.config.rate_limit_rps, self.config.rate_limit_burst, self.clock.now()
            )
            if balance is not None:
                self.book.settle(self.clock.now())
                self.book.balance = balance
            return self.config_view()

    def config_view(self) -> dict[str, Any]:
        """The current config (secrets masked) and balance."""
        with self._lock:
            return {**self.config.public_view(), "balance": self.book.balance}

    def stats_view(self) -> dict[str, Any]:
        """Counters, balance and tasks by current status."""
        with self._lock:
            now = self.clock.now()
            self.book.settle(now)
            return {
                **self.stats.as_dict(),
                "balance": self.book.balance,
                "reserved": self.book.reserved,
                "points_spent": sum(r.points for r in self.book.usage),
                "tasks": self.book.counts(now),
                "llm": self.llm.stats.as_dict(),
            }

    def task_view(self, task_id: str) -> dict[str, object] | None:
        """Internal view of one task, or None."""
        with self._lock:
            task = self.book.tasks.get(task_id)
            return None if task is None else task.view(self.clock.now())

    # --- the upstream API ------------------------------------------------------------------

    def submit(self, path: str, raw_body: bytes, headers: Mapping[str, str]) -> SimReply:
        """``POST <base>/<path>``: create a task, or refuse."""
        with self._lock:
            route = self._submit_route(path)
            if route is None:
                return replies.not_found_path()
            refused, fault = self._gate(headers, is_submit=True)
            if refused is not None:
                return refused
            self.stats.submit_requests += 1
            limit = self.config.max_body_bytes
            if limit is not None and len(raw_body) > limit:
                return replies.too_large()
            now = self.clock.now()
            self.book.settle(now)
            spec = parse_submit(route, _json_or_none(raw_body), self.config, self.book.tasks, now)
            if isinstance(spec, Refusal):
                reply = self._refuse(spec.message)
            elif self.book.available() < price_of(spec, self.config):
                reply = self._refuse(replies.QUOTA_EXCEEDED)
            else:
                self._numbers += 1
                task = plan_task(spec, self.config, self._numbers, now)
                self.book.add(task)
                self.book.settle(now)
                self._count_created(task)
                message = (
                    replies.VIDEO_SUBMIT_OK if route.family is Family.VIDEO else replies.SUBMIT_OK
                )
                reply = replies.success(
                    message, {"id": task.id, "prompt": spec.prompt, "model": spec.model}
                )
            return self._disturb(reply, fault)

    def result(
        self, result_path: str, task_id: str, headers: Mapping[str, str], public_base: str
    ) -> SimReply:
        """``GET <base>/<family>/result/<id>``: the task as it stands now."""
        with self._lock:
            family = RESULT_FAMILIES[result_path]
            if result_path in LEGACY_FLUX_PATHS and not self.config.legacy_flux_paths:
                return replies.not_found_path()
            refused, fault = self._gate(headers, is_submit=False)
            if refused is not None:
                return refused
            self.stats.polls += 1
            self.stats.polls_by_path[result_path] += 1
            now = self.clock.now()
            self.book.settle(now)
            task = self.book.find(
                task_id, family, video_result_has_clips=self.config.mj_video_on_video_result
            )
            if task is None:
                self.stats.polls_unknown_id += 1
                if family is Family.VIDEO:
                    reply = replies.fail(replies.VIDEO_NOT_FOUND, status_code=500)
                else:
                    reply = replies.fail(replies.NOT_FOUND)
            else:
                task.polls += 1
                message = (
                    replies.VIDEO_QUERY_OK if family is Family.VIDEO else replies.IMAGE_QUERY_OK
                )
                reply = replies.success(message, self._task_data(task, now, public_base))
            return self._disturb(reply, fault)

    def balance(self, headers: Mapping[str, str]) -> SimReply:
        """``GET <base>/account/balance``."""
        with self._lock:
            refused, _ = self._gate(headers, is_submit=None)
            if refused is not None:
                return refused
            self.book.settle(self.clock.now())
            return replies.success("查询成功", {"balance": self.book.balance})

    def usage(self, headers: Mapping[str, str], page: str | None, size: str | None) -> SimReply:
        """``GET <base>/account/usage?page=&size=``: charges, newest first."""
        with self._lock:
            refused, _ = self._gate(headers, is_submit=None)
            if refused is not None:
                return refused
            try:
                page_no, page_size = int(page or 1), int(size or 20)
            except ValueError:
                return replies.fail(PARAMS_REFUSAL)
            if page_no < 1 or not 1 <= page_size <= 100:
                return replies.fail(PARAMS_REFUSAL)
            self.book.settle(self.clock.now())
            newest = list(reversed(self.book.usage))
            chunk = newest[(page_no - 1) * page_size : page_no * page_size]
            records = [
                {
                    "task_id": r.task_id,
                    "model": r.model,
                    "points": r.points,
                    "created_at": _rfc3339(r.at),
                }
                for r in chunk
            ]
            return replies.success("查询成功", {"records": records, "total": len(newest)})

    def file(self, task_id: str, name: str) -> SimReply:
        """``GET /oss/<id>/<name>``: a result file; no auth, like public object storage."""
        with self._lock:
            now = self.clock.now()
            task = self.book.tasks.get(task_id)
            if task is None or not task.is_done(now) or not task.succeeds:
                return SimReply(404, raw=MISSING_XML, media_type=XML)
            if name not in file_names(task.output, task.outputs):
                return SimReply(404, raw=MISSING_XML, media_type=XML)
            ttl = self.config.url_ttl_seconds
            if ttl is not None and now > task.finished_at + ttl:
                return SimReply(403, raw=EXPIRED_XML, media_type=XML)
            self.stats.files_served += 1
            if name.endswith(".mp4"):
                return SimReply(200, raw=mp4_bytes(task_id), media_type="video/mp4")
            return SimReply(200, raw=png_bytes(task_id, name), media_type="image/png")

    # --- internals -------------------------------------------------------------------------

    def _gate(
        self, headers: Mapping[str, str], is_submit: bool | None
    ) -> tuple[SimReply | None, Fault | None]:
        """Auth, then the token bucket, then (submits and polls only) the fault draw."""
        self.stats.requests += 1
        if not self._authorized(headers):
            self.stats.unauthorized += 1
            return replies.unauthorized(), None
        if self.config.key_disabled:
            self.stats.forbidden += 1
            return replies.forbidden(), None
        wait = self.bucket.take(self.clock.now())
        if wait is not None:
            self.stats.rate_limited += 1
            return replies.rate_limited(max(1, int(wait + 0.999))), None
        if is_submit is None:
            return None, None
        fault = draw_fault(self.rng, self.config, is_submit)
        if fault is None:
            return None, None
        self.stats.faults[fault.value] += 1
        if fault is Fault.ERROR_500:
            self.stats.errors_5xx += 1
            return replies.internal_error(), fault
        if fault is Fault.ERROR_502:
            self.stats.errors_5xx += 1
            return replies.bad_gateway(), fault
        if fault is Fault.RATE_429:
            self.stats.rate_limited += 1
            return replies.rate_limited(self.config.retry_after_seconds), fault
        return None, fault

    def _submit_route(self, path: str) -> SubmitRoute | None:
        """The route as this era of the API has it; None where the path does not exist."""
        route = SUBMIT_ROUTES[path]
        legacy = self.config.legacy_flux_paths
        if path in LEGACY_FLUX_PATHS and not legacy:
            return None
        if legacy and route.family is Family.IMAGE:
            return replace(route, models=tuple(m for m in route.models if m not in FLUX_MODELS))
        return route

    def authorized(self, headers: Mapping[str, str]) -> bool:
        """Whether the request carries an accepted key (and app id, when required)."""
        return self._authorized(headers)

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        scheme, _, key = headers.get("authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return False
        expected = self.config.api_key
        if expected is not None and not hmac.compare_digest(
            key.encode(), expected.get_secret_value().encode()
        ):
            return False
        if self.config.require_app_id:
            app_id = headers.get("x-app-id", "").strip()
            wanted = self.config.app_id
            if not app_id:
                return False
            if wanted is not None and not hmac.compare_digest(
                app_id.encode(), wanted.get_secret_value().encode()
            ):
                return False
        return True

    def _disturb(self, reply: SimReply, fault: Fault | None) -> SimReply:
        """Apply the faults that let the request through but spoil or delay its answer."""
        if fault is Fault.SLOW:
            return reply.later(self.config.slow_seconds)
        if fault is Fault.READ_TIMEOUT:
            return reply.later(self.config.hang_seconds)
        if fault is Fault.MALFORMED_NOT_JSON:
            return SimReply(200, raw=MALFORMED_PAGE, media_type=replies.HTML)
        if fault is Fault.MALFORMED_MISSING_ID and reply.body is not None:
            data = reply.body.get("data")
            spoiled = {k: v for k, v in data.items() if k != "id"} if isinstance(data, dict) else {}
            return SimReply(
                200, {"status": "Success", "message": reply.body.get("message"), "data": spoiled}
            )
        return reply

    def _refuse(self, message: str) -> SimReply:
        self.stats.refusals[message] += 1
        return replies.fail(message)

    def _count_created(self, task: SimTask) -> None:
        self.stats.tasks_created += 1
        self.stats.submits_by_prompt[task.spec.dedupe_key] += 1
        self.stats.submits_by_model[task.spec.model] += 1
        self.stats.submits_by_path[task.spec.route.path] += 1

    def _task_data(self, task: SimTask, now: float, public_base: str) -> dict[str, object]:
        status, progress = task.state_at(now)
        data: dict[str, object] = {
            "id": task.id,
            "status": NUMERIC_STATUS[status] if self.config.numeric_status else status.value,
            "progress": progress,
            "prompt": task.spec.prompt,
        }
        if status is TaskStatus.FAILURE:
            data["fail_reason"] = task.fail_reason
        if status is not TaskStatus.SUCCESS:
            return data
        data["total_points"] = task.points
        base = self.config.public_base_url or public_base
        urls = [file_url(base, task.id, n) for n in file_names(task.output, task.outputs)]
        if task.output in (Output.GRID, Output.SINGLE):
            data["image_url"] = urls[0]
        elif task.output is Output.IMAGES:
            data["image_urls"] = urls
        elif task.output is Output.VIDEO:
            data["video_url"] = urls[0]
            if len(urls) > 1:  # a Midjourney batch; one clip answers in the measured shape
                data["video_urls"] = urls
        else:
            data["prompts"] = list(task.prompts)
        return data


def _json_or_none(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _rfc3339(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
