"""The upstream seam: everything the service knows about MetaChat lives in this package.

- `build_catalogue` / `Catalogue`: models, actions, params schemas, paths, validation of job specs.
- `SpecError` (and `UnknownModel`, `UnknownAction`): a refused job spec, with ``(loc, msg)`` pairs.

This package imports nothing else of ours.
"""

from mcjobs.metachat.catalogue import Catalogue, CatalogueOverrides, build_catalogue
from mcjobs.metachat.specs import (
    PROVIDERS,
    ActionSpec,
    Family,
    ImageRule,
    ModelSpec,
    PromptRule,
    Provider,
    ResultField,
    SourceRule,
    ValidatedSpec,
)
from mcjobs.metachat.validation import SpecError, UnknownAction, UnknownModel

__all__ = [
    "PROVIDERS",
    "ActionSpec",
    "Catalogue",
    "CatalogueOverrides",
    "Family",
    "ImageRule",
    "ModelSpec",
    "PromptRule",
    "Provider",
    "ResultField",
    "SourceRule",
    "SpecError",
    "UnknownAction",
    "UnknownModel",
    "ValidatedSpec",
    "build_catalogue",
]
