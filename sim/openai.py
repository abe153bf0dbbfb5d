"""The simulated OpenAI-compatible host: images (generations, edits), chat completions, models.

Standard OpenAI request and response shapes: base64 PNGs in ``data[].b64_json``, token
``usage``, errors as ``{"error": {"message", "type", "param", "code"}}``. Each answer arrives
after a lognormal latency around the kind's median (``llm_durations``, times ``time_scale``),
and every image sent is remembered (``sent``) so a test can check what reached storage.
Shares the simulator's key, token bucket, fault draw and random stream.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sim import replies
from sim.faults import Fault, draw_fault
from sim.replies import SimReply
from sim.storage import png_bytes

if TYPE_CHECKING:
    from sim.simulator import Simulator

IMAGE_SIZES = ("auto", "1024x1024", "1536x1024", "1024x1536")
QUALITIES = ("auto", "low", "medium", "high")
BACKGROUNDS = ("auto", "transparent", "opaque")
FORMATS = ("png", "jpeg", "webp")
ROLES = ("system", "developer", "user", "assistant")
# What one image costs in output tokens, by quality (OpenAI's published figures for 1024x1024).
IMAGE_TOKENS = {"low": 272, "medium": 1056, "high": 4160, "auto": 1056}


@dataclass
class LlmStats:
    requests: int = 0
    images_sent: int = 0
    chats: int = 0
    by_path: Counter[str] = field(default_factory=Counter)
    by_model: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "images_sent": self.images_sent,
            "chats": self.chats,
            "by_path": dict(self.by_path),
            "by_model": dict(self.by_model),
            "errors": dict(self.errors),
        }


class LlmHost:
    """The OpenAI-compatible paths of one `Simulator` (its lock, config, clock and streams)."""

    def __init__(self, simulator: Simulator) -> None:
        self._sim = simulator
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.stats = LlmStats()
            self.sent: list[dict[str, Any]] = []
            self._numbers = 0
            self._fault: Fault | None = None

    def models(self, headers: Mapping[str, str]) -> SimReply:
        """``GET models``."""
        with self._lock:
            refused = self._gate(headers, "models", draw=False)
            if refused is not None:
                return refused
            data = [
                {"id": model, "object": "model", "created": 1735689600, "owned_by": "metachat"}
                for model in self._sim.config.llm_models
            ]
            return SimReply(200, {"object": "list", "data": data})

    def images(self, path: str, raw_body: bytes, headers: Mapping[str, str]) -> SimReply:
        """``POST images/generations`` and ``POST images/edits`` (JSON form)."""
        edit = path == "images/edits"
        with self._lock:
            refused = self._gate(headers, path, draw=True)
            if isinstance(refused, SimReply):
                return refused
            body = _json(raw_body)
            problem = self._image_problem(body, edit=edit)
            if problem is not None:
                return problem
            assert body is not None
            n = body.get("n", 1)
            quality = body.get("quality", "auto")
            self._numbers += 1
            answer_id = f"img_{self._numbers:08d}"
            entries = []
            side = self._sim.config.llm_png_side
            for index in range(n):
                png = png_bytes(answer_id, f"{index}.png", size=side)
                self.sent.append(
                    {
                        "answer": answer_id,
                        "index": index,
                        "model": body["model"],
                        "bytes": len(png),
                        "sha256": hashlib.sha256(png).hexdigest(),
                    }
                )
                entries.append({"b64_json": base64.b64encode(png).decode("ascii")})
            self.stats.images_sent += n
            self.stats.by_model[body["model"]] += 1
            input_tokens = _tokens(body.get("prompt", "")) + 65 * len(body.get("images", []))
            output_tokens = IMAGE_TOKENS[quality] * n
            answer = {
                "created": int(self._sim.clock.now()),
                "data": entries,
                "background": body.get("background", "opaque"),
                "output_format": body.get("output_format", "png"),
                "quality": "medium" if quality == "auto" else quality,
                "size": "1024x1024" if body.get("size", "auto") == "auto" else body["size"],
                "usage": {
                    "input_tokens": input_tokens,
                    "output_tokens": output_tokens,
                    "total_tokens": input_tokens + output_tokens,
                    "input_tokens_details": {"text_tokens": input_tokens, "image_tokens": 0},
                },
            }
            kind = "edit" if edit else "image"
            return self._disturb(SimReply(200, answer).later(self._latency(kind)))

    def chat(self, raw_body: bytes, headers: Mapping[str, str]) -> SimReply:
        """``POST chat/completions``: a deterministic answer naming the last user message."""
        with self._lock:
            refused = self._gate(headers, "chat/completions", draw=True)
            if isinstance(refused, SimReply):
                return refused
            body = _json(raw_body)
            problem = self._chat_problem(body)
            if problem is not None:
                return problem
            assert body is not None
            messages = body["messages"]
            last = next(
                (m["content"] for m in reversed(messages) if m["role"] == "user"), "nothing"
            )
            text = f"Simulated answer from {body['model']} to: {_text_of(last)[:400]}"
            words = text.split()
            finish = "stop"
            limit = body.get("max_tokens")
            if isinstance(limit, int) and len(words) > limit:
                words, finish = words[:limit], "length"
                text = " ".join(words)
            prompt_tokens = sum(_tokens(_text_of(m["content"])) + 4 for m in messages)
            completion_tokens = max(1, len(words))
            self._numbers += 1
            self.stats.chats += 1
            self.stats.by_model[body["model"]] += 1
            answer = {
                "id": f"chatcmpl-sim{self._numbers:08d}",
                "object": "chat.completion",
                "created": int(self._sim.clock.now()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "finish_reason": finish,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
            return self._disturb(SimReply(200, answer).later(self._latency("chat")))

    # --- checks ------------------------------------------------------------------------------

    def _image_problem(self, body: dict[str, Any] | None, *, edit: bool) -> SimReply | None:
        if body is None:
            return self._error(400, "We could not parse the JSON body of your request.")
        model = body.get("model")
        if model not in self._image_models():
            return self._unknown_model(model)
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return self._error(400, "Invalid 'prompt': empty string.", param="prompt")
        if self._sim.config.reject_marker in prompt:
            return self._error(
                400,
                "Your request was rejected by the safety system.",
                code="moderation_blocked",
            )
        n = body.get("n", 1)
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 10:
            return self._error(400, "Invalid 'n': must be between 1 and 10.", param="n")
        for name, allowed in (
            ("size", IMAGE_SIZES),
            ("quality", QUALITIES),
            ("background", BACKGROUNDS),
            ("output_format", FORMATS),
        ):
            if name in body and body[name] not in allowed and not _google_size(model, name, body):
                return self._error(400, f"Invalid value for '{name}': {body[name]!r}.", param=name)
        if body.get("background") == "transparent" and body.get("output_format") == "jpeg":
            return self._error(
                400, "Transparent background requires png or webp.", param="background"
            )
        if edit:
            images = body.get("images")
            if not isinstance(images, list) or not 1 <= len(images) <= 16:
                return self._error(400, "Invalid 'images': 1 to 16 images.", param="images")
            for image in images:
                url = image.get("image_url") if isinstance(image, dict) else None
                if not isinstance(url, str) or not url.startswith(("http", "data:image/")):
                    return self._error(400, "Invalid image_url in 'images'.", param="images")
        return None

    def _chat_problem(self, body: dict[str, Any] | None) -> SimReply | None:
        if body is None:
            return self._error(400, "We could not parse the JSON body of your request.")
        model = body.get("model")
        if model not in self._sim.config.llm_models or model in self._image_models():
            return self._unknown_model(model)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self._error(
                400, "Invalid 'messages': empty array. Expected at least 1.", param="messages"
            )
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                return self._error(
                    400, f"Invalid 'messages[{index}].role'.", param=f"messages[{index}].role"
                )
            if not isinstance(message.get("content"), str | list):
                return self._error(
                    400,
                    f"Invalid 'messages[{index}].content'.",
                    param=f"messages[{index}].content",
                )
            if self._sim.config.reject_marker in _text_of(message["content"]):
                return self._error(
                    400, "The prompt was flagged by the content filter.", code="content_filter"
                )
        return None

    def _image_models(self) -> set[str]:
        return {m for m in self._sim.config.llm_models if "image" in m or m.startswith("imagen")}

    def _gate(self, headers: Mapping[str, str], path: str, *, draw: bool) -> SimReply | None:
        """Auth, the shared token bucket, then the fault draw (5xx, 429, slow, hang, garbage)."""
        sim = self._sim
        self.stats.requests += 1
        self.stats.by_path[path] += 1
        if not sim.authorized(headers):
            return self._error(
                401,
                "Incorrect API key provided.",
                kind="invalid_request_error",
                code="invalid_api_key",
            )
        if sim.config.key_disabled:
            return self._error(403, "This key is disabled.", kind="permission_error")
        wait = sim.bucket.take(sim.clock.now())
        if wait is not None:
            return self._rate_limited(max(1, math.ceil(wait)))
        self._fault = draw_fault(sim.rng, sim.config, True) if draw else None
        if self._fault in (Fault.ERROR_500, Fault.ERROR_502):
            self.stats.errors["5xx"] += 1
            if self._fault is Fault.ERROR_502:
                return SimReply(502, raw=replies.BAD_GATEWAY_PAGE, media_type=replies.HTML)
            return self._error(
                500, "The server had an error processing your request.", kind="server_error"
            )
        if self._fault is Fault.RATE_429:
            return self._rate_limited(sim.config.retry_after_seconds)
        return None

    def _disturb(self, reply: SimReply) -> SimReply:
        config = self._sim.config
        if self._fault is Fault.SLOW:
            return reply.later(config.slow_seconds)
        if self._fault is Fault.READ_TIMEOUT:
            return reply.later(config.hang_seconds)
        if self._fault in (Fault.MALFORMED_NOT_JSON, Fault.MALFORMED_MISSING_ID):
            return SimReply(200, raw=b"<html><body>OK</body></html>", media_type=replies.HTML)
        return reply

    def _latency(self, kind: str) -> float:
        config = self._sim.config
        if config.instant:
            return 0.0
        median = config.llm_durations.get(kind, 10.0)
        spread = math.exp(self._sim.rng.gauss(0.0, config.duration_sigma))
        return median * spread * config.time_scale

    def _rate_limited(self, retry_after: int) -> SimReply:
        self.stats.errors["429"] += 1
        reply = self._error(
            429, "Rate limit reached for requests.", kind="requests", code="rate_limit_exceeded"
        )
        return SimReply(429, reply.body, headers={"Retry-After": str(retry_after)})

    def _unknown_model(self, model: object) -> SimReply:
        return self._error(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )

    def _error(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> SimReply:
        self.stats.errors[str(status)] += 1
        error = {"message": message, "type": kind, "param": param, "code": code}
        return SimReply(status, {"error": error})


def _json(raw: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _google_size(model: object, name: str, body: Mapping[str, Any]) -> bool:
    """Gemini and Imagen take any WIDTHxHEIGHT size (and response_format)."""
    if not isinstance(model, str) or model.startswith("gpt-image") or name != "size":
        return False
    width, _, height = str(body[name]).partition("x")
    return width.isdigit() and height.isdigit()
