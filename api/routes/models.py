"""Routes: the model catalogue."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from api.deps import CatalogueDep, CurrentKey, reject_unknown_query
from api.schemas import ModelsOut, problems

router = APIRouter(prefix="/v1", tags=["models"], dependencies=[Depends(reject_unknown_query)])


@router.get(
    "/models", response_model=ModelsOut, responses=problems(401), summary="The model catalogue"
)
def get_models(_key: CurrentKey, catalogue: CatalogueDep) -> dict[str, Any]:
    """Providers and every model with its actions: `params` as JSON Schema, prompt and image
    rules, `expected_seconds` (typical duration) and `price_points` (null when unknown)."""
    return catalogue.json_schema()
