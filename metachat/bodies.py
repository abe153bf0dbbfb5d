"""Submit bodies: a `SubmitRequest` laid out the way the action's upstream endpoint expects."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from metachat.images import fit_for_upstream
from metachat.specs import ActionSpec
from metachat.tasks import SubmitRequest

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+);base64,(?P<payload>.*)$", re.DOTALL)


def submit_body(action: ActionSpec, request: SubmitRequest) -> dict[str, Any]:
    """The JSON body for ``request``; `ValueError` if a follow-up lacks its source task."""
    if action.body == "follow_up":
        return _follow_up_body(action, request)
    body: dict[str, Any] = {"model": request.model}
    if request.prompt is not None:
        body["prompt"] = request.prompt
    params = {**action.default_params, **request.params}
    if params:
        body["params"] = params
    if request.source_task_id is not None and action.source is not None:
        body.update(_source_fields(action, request))
    elif request.images:
        body["images"] = [upstream_image(image) for image in request.images]
    return body


def has_inline_images(request: SubmitRequest) -> bool:
    """Whether building the body decodes pictures (worth a thread, off the event loop)."""
    return any(
        isinstance(image.get("url"), str) and str(image["url"]).startswith("data:")
        for image in request.images
    )


def upstream_image(image: Mapping[str, Any]) -> dict[str, Any]:
    """One ``images[]`` entry: ``{url}`` for a link; for a data URL the ``{type, size, w, h,
    b64}`` object public clients send, the picture shrunk to `MAX_INLINE_BYTES` first."""
    url = image.get("url")
    if not isinstance(url, str):
        return dict(image)
    match = _DATA_URL.match(url)
    if match is None:
        return {"url": url}
    try:
        raw = base64.b64decode("".join(match["payload"].split()), validate=True)
    except (binascii.Error, ValueError):
        return {"type": match["mime"], "b64": url}
    sent = fit_for_upstream(raw, match["mime"])
    entry: dict[str, Any] = {"type": sent.mime, "size": len(sent.data)}
    if sent.width is not None and sent.height is not None:
        entry.update(w=sent.width, h=sent.height)
    if sent.data is raw:
        entry["b64"] = url
    else:
        entry["b64"] = f"data:{sent.mime};base64,{base64.b64encode(sent.data).decode('ascii')}"
    return entry


def _follow_up_body(action: ActionSpec, request: SubmitRequest) -> dict[str, Any]:
    if not request.source_task_id:
        raise ValueError(f"{action.name} needs the source job's upstream task id")
    body = _source_fields(action, request)
    params = {**action.default_params, **request.params}
    body.update({key: value for key, value in params.items() if key not in body})
    return body


def _source_fields(action: ActionSpec, request: SubmitRequest) -> dict[str, Any]:
    fields: dict[str, Any] = {"id": request.source_task_id}
    if action.needs_index:
        if request.source_index is None:
            raise ValueError(f"{action.name} needs a source index 1..4")
        fields["index"] = request.source_index
    return fields
