"""What the simulator answers, independent of the web framework: status, body, headers, delay."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

JSON = "application/json"
HTML = "text/html; charset=utf-8"

SUBMIT_OK = "任务创建成功"
VIDEO_SUBMIT_OK = "视频生成任务创建成功"
IMAGE_QUERY_OK = "图像任务查询成功"
VIDEO_QUERY_OK = "视频任务查询成功"
NOT_FOUND = "任务不存在"
VIDEO_NOT_FOUND = "视频任务查询失败: Video task not found"
QUOTA_EXCEEDED = "You exceeded your current API quota. Please purchase the API points."
BAD_GATEWAY_PAGE = b"<html><body><h1>502 Bad Gateway</h1></body></html>"


@dataclass(frozen=True)
class SimReply:
    """One HTTP answer. ``delay`` seconds pass (on the sim's clock) before it is sent."""

    status_code: int
    body: Mapping[str, object] | None = None
    raw: bytes | None = None
    media_type: str = JSON
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def later(self, seconds: float) -> SimReply:
        """The same answer, sent ``seconds`` later."""
        return SimReply(
            self.status_code,
            self.body,
            self.raw,
            self.media_type,
            self.headers,
            self.delay + seconds,
        )


def success(message: str, data: Mapping[str, object]) -> SimReply:
    """HTTP 200 ``Success`` envelope."""
    return SimReply(200, {"status": "Success", "message": message, "data": dict(data)})


def fail(message: str, status_code: int = 200) -> SimReply:
    """A ``Fail`` envelope: HTTP 200 for refusals, other codes for the known quirks."""
    return SimReply(status_code, {"status": "Fail", "message": message, "data": None})


def service_error(status_code: int, kind: str, message: str, **headers: str) -> SimReply:
    """A service-level error: the error type sits in ``status``, no ``data``."""
    return SimReply(status_code, {"status": kind, "message": message}, headers=headers)


def unauthorized() -> SimReply:
    return service_error(401, "authentication_error", "Unauthorized Request")


def forbidden() -> SimReply:
    return service_error(403, "permission_error", "API key is expired or disabled")


def rate_limited(retry_after: int) -> SimReply:
    return service_error(
        429, "rate_limit_error", "Too Many Requests", **{"Retry-After": str(retry_after)}
    )


def internal_error() -> SimReply:
    return service_error(500, "internal_error", "Internal Server Error")


def bad_gateway() -> SimReply:
    return SimReply(502, raw=BAD_GATEWAY_PAGE, media_type=HTML)


def too_large() -> SimReply:
    return service_error(413, "request_too_large", "Request Entity Too Large")


def not_found_path() -> SimReply:
    return service_error(404, "not_found_error", "Not Found")
