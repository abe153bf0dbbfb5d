"""The simulator as a FastAPI app: MetaChat's paths under ``/open/v1``, files under ``/oss``,
and unauthenticated admin routes under ``/_sim``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from sim import replies
from sim.catalogue import RESULT_FAMILIES, SUBMIT_ROUTES
from sim.clock import Clock
from sim.config import SimConfig
from sim.replies import SimReply
from sim.simulator import Simulator
from sim.storage import OSS_PREFIX

ADMIN_PREFIX = "/_sim"

Sender = Callable[[SimReply], Awaitable[Response]]


def create_sim_app(config: SimConfig | None = None, *, clock: Clock | None = None) -> FastAPI:
    """Build a simulator app. Its state is ``app.state.simulator`` (a :class:`Simulator`)."""
    config = config or SimConfig()
    simulator = Simulator(config, clock)
    app = FastAPI(title="MetaChat simulator", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.simulator = simulator

    async def send(reply: SimReply) -> Response:
        if reply.delay > 0:
            await simulator.clock.sleep(reply.delay)
        headers = dict(reply.headers)
        if reply.raw is not None:
            return Response(reply.raw, reply.status_code, headers, media_type=reply.media_type)
        return JSONResponse(reply.body, reply.status_code, headers)

    _add_open_api(app, simulator, config.base_path.rstrip("/"), send)
    _add_llm_api(app, simulator, config.llm_base_path.rstrip("/"), send)
    _add_admin(app, simulator)

    @app.get(OSS_PREFIX + "/{task_id}/{name}")
    async def oss_file(task_id: str, name: str) -> Response:
        return await send(simulator.file(task_id, name))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            reply = replies.not_found_path()
        else:
            reply = replies.service_error(exc.status_code, "invalid_request_error", str(exc.detail))
        return await send(reply)

    return app


def _public_base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _add_open_api(app: FastAPI, sim: Simulator, base: str, send: Sender) -> None:
    for path in SUBMIT_ROUTES:

        async def submit(request: Request, path: str = path) -> Response:
            body = await request.body()
            return await send(sim.submit(path, body, request.headers))

        app.add_api_route(f"{base}/{path}", submit, methods=["POST"], name=f"submit {path}")

    for result_path in RESULT_FAMILIES:

        async def result(
            request: Request, task_id: str, result_path: str = result_path
        ) -> Response:
            reply = sim.result(result_path, task_id, request.headers, _public_base(request))
            return await send(reply)

        app.add_api_route(
            f"{base}/{result_path}/{{task_id}}", result, methods=["GET"], name=f"poll {result_path}"
        )

    cfg = sim.config

    async def balance(request: Request) -> Response:
        return await send(sim.balance(request.headers))

    async def usage(request: Request) -> Response:
        query = request.query_params
        reply = sim.usage(request.headers, query.get("page"), query.get("size"))
        return await send(reply)

    app.add_api_route(f"{base}/{cfg.balance_path}", balance, methods=["GET"], name="balance")
    app.add_api_route(f"{base}/{cfg.usage_path}", usage, methods=["GET"], name="usage")


def _add_llm_api(app: FastAPI, sim: Simulator, base: str, send: Sender) -> None:
    """The OpenAI-compatible host's paths (``sim.openai``)."""

    async def models(request: Request) -> Response:
        return await send(sim.llm.models(request.headers))

    async def generations(request: Request) -> Response:
        body = await request.body()
        return await send(sim.llm.images("images/generations", body, request.headers))

    async def edits(request: Request) -> Response:
        body = await request.body()
        return await send(sim.llm.images("images/edits", body, request.headers))

    async def chat(request: Request) -> Response:
        return await send(sim.llm.chat(await request.body(), request.headers))

    app.add_api_route(f"{base}/models", models, methods=["GET"], name="llm models")
    app.add_api_route(f"{base}/images/generations", generations, methods=["POST"])
    app.add_api_route(f"{base}/images/edits", edits, methods=["POST"])
    app.add_api_route(f"{base}/chat/completions", chat, methods=["POST"])

    @app.get(ADMIN_PREFIX + "/llm")
    async def llm_view() -> dict[str, Any]:
        """What the OpenAI-compatible host did, with every image it sent (sha256 each)."""
        return {**sim.llm.stats.as_dict(), "sent": list(sim.llm.sent)}


def _add_admin(app: FastAPI, sim: Simulator) -> None:
    @app.get(ADMIN_PREFIX + "/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(ADMIN_PREFIX + "/stats")
    async def stats() -> dict[str, Any]:
        return sim.stats_view()

    @app.get(ADMIN_PREFIX + "/config")
    async def get_config() -> dict[str, Any]:
        return sim.config_view()

    @app.post(ADMIN_PREFIX + "/config")
    async def set_config(request: Request) -> Response:
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object of config fields")
            return JSONResponse(sim.configure(changes))
        except ValidationError as exc:
            errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
            return JSONResponse({"detail": "invalid config", "errors": errors}, 422)
        except ValueError as exc:
            return JSONResponse({"detail": str(exc)}, 422)

    @app.post(ADMIN_PREFIX + "/reset")
    async def reset() -> dict[str, Any]:
        sim.reset()
        return sim.stats_view()

    @app.get(ADMIN_PREFIX + "/tasks/{task_id}")
    async def task(task_id: str) -> Response:
        view = sim.task_view(task_id)
        if view is None:
            return JSONResponse({"detail": "no such task"}, 404)
        return JSONResponse(view)
