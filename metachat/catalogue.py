"""The catalogue of MetaChat models: lookups, job-spec validation, JSON for ``GET /v1/models``.

Build one with `build_catalogue`, passing the operator's `CatalogueOverrides` (the service reads
them from a JSON setting) to replace paths, prices and typical durations that no source confirms::

    catalogue = build_catalogue(CatalogueOverrides.model_validate_json(raw_json))
    spec = catalogue.validate(model="mj-v7", action=None, prompt="a lighthouse", params={},
                              images=[], has_source=False, source_index=None)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from metachat._defaults import (
    DEFAULT_PATHS,
    MODELS,
    RESULT_ENDPOINTS,
    ActionTemplate,
    ModelTemplate,
    chat_model,
)
from metachat.specs import (
    PROVIDERS,
    ActionSpec,
    ModelSpec,
    Provider,
    UsagePrices,
    ValidatedSpec,
)
from metachat.validation import SpecError, UnknownAction, UnknownModel, validate_spec

_PATH_CHARS = re.compile(r"^[A-Za-z0-9._~\-/{}]+$")


class UsagePricesOverride(BaseModel):
    """Points per image and per thousand tokens for a synchronous model (see `UsagePrices`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_image: Annotated[float, Field(ge=0)] | None = None
    per_1k_input_tokens: Annotated[float, Field(ge=0)] | None = None
    per_1k_output_tokens: Annotated[float, Field(ge=0)] | None = None

    def prices(self) -> UsagePrices:
        return UsagePrices(self.per_image, self.per_1k_input_tokens, self.per_1k_output_tokens)


class CatalogueOverrides(BaseModel):
    """Operator-supplied corrections to the default catalogue.

    ``paths``: endpoint key (``"midjourney.upscale"``, ``"image.result"``, ``"account.balance"``,
    see ``docs/upstream.md``) or ``"<model>:<action>:submit"`` / ``"<model>:<action>:result"``
    for one model → path relative to the base URL; result paths contain ``{id}``.
    ``prices`` and ``expected_seconds``: ``"<model>"`` or ``"<model>:<action>"`` (more specific
    wins) → points per task / typical seconds. ``default_params``: the same keys → params sent
    when a job leaves them out, e.g. ``{"flux-2-pro": {"mode": "pro"}}``; a ``null`` value
    removes a default. Unknown keys are refused so typos surface at start.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    paths: dict[str, str] = Field(default_factory=dict)
    prices: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)
    expected_seconds: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    default_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    usage_prices: dict[str, UsagePricesOverride] = Field(default_factory=dict)
    chat_models: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$")]] = (
        Field(default_factory=list)
    )


class Catalogue:
    """Every model the service can send upstream, with its actions and rules. Immutable."""

    def __init__(
        self,
        models: Iterable[ModelSpec],
        *,
        balance_path: str,
        usage_path: str,
        llm_models_path: str = "models",
    ) -> None:
        self._models: Mapping[str, ModelSpec] = MappingProxyType({m.id: m for m in models})
        self.balance_path = balance_path
        self.usage_path = usage_path
        # the OpenAI-compatible host's model list (for `mcjobs upstream check`)
        self.llm_models_path = llm_models_path

    @property
    def providers(self) -> tuple[Provider, ...]:
        return PROVIDERS

    @property
    def models(self) -> tuple[ModelSpec, ...]:
        return tuple(self._models.values())

    def model(self, model_id: str) -> ModelSpec:
        """The model with this exact upstream id; `UnknownModel` (loc ``("model",)``) otherwise."""
        try:
            return self._models[model_id]
        except KeyError:
            raise UnknownModel(model_id, self._models) from None

    def action(self, model_id: str, action: str | None = None) -> ActionSpec:
        """One action of a model, its default action when ``action`` is None."""
        model = self.model(model_id)
        name = model.default_action if action is None else action
        try:
            return model.actions[name]
        except KeyError:
            raise UnknownAction(model_id, name, model.actions) from None

    def validate(
        self,
        *,
        model: str | None,
        action: str | None,
        prompt: str | None,
        params: dict[str, Any] | None,
        images: list[dict[str, Any]] | None,
        has_source: bool,
        source_index: int | None,
        source_model: str | None = None,
        source_action: str | None = None,
    ) -> ValidatedSpec:
        """Check a job spec; raise `SpecError` (with every ``(loc, msg)``) or return it cleaned.

        With a source job, pass its ``source_model`` and ``source_action`` when known: the model
        then defaults to the source's, and the catalogue checks the source's output suits the
        action (an upscale needs a split tile).
        """
        if model is None:
            if not (has_source and source_model):
                raise SpecError([(("model",), "a model is required")])
            model = source_model
        spec = self.model(model)
        action_spec = self.action(model, action)
        source_spec = None
        if source_model is not None:
            source_spec = self._models.get(source_model)
            if source_spec is None:
                raise SpecError([(("source", "job_id"), f"unknown source model {source_model!r}")])
        return validate_spec(
            spec,
            action_spec,
            prompt=prompt,
            params=params,
            images=images,
            has_source=has_source,
            source_index=source_index,
            source_model=source_spec,
            source_action=source_action,
        )

    def params_json_schema(self, model_id: str, action: str | None = None) -> dict[str, Any]:
        """JSON Schema (draft 2020-12) of ``params`` for one model and action."""
        return self.action(model_id, action).params_json_schema()

    def json_schema(self) -> dict[str, Any]:
        """The whole catalogue as JSON: providers, models, actions with params schemas."""
        return {
            "providers": list(self.providers),
            "models": [model.as_json() for model in self._models.values()],
        }


def build_catalogue(overrides: CatalogueOverrides | None = None) -> Catalogue:
    """The default catalogue with ``overrides`` applied; `ValueError` names any unknown key."""
    overrides = overrides or CatalogueOverrides()
    _check_override_keys(overrides)
    paths = {**DEFAULT_PATHS, **{k: v for k, v in overrides.paths.items() if k in DEFAULT_PATHS}}
    for key, path in overrides.paths.items():
        _check_path(key, path, result=key in RESULT_ENDPOINTS or key.endswith(":result"))
    models = [_build_model(template, paths, overrides) for template in _templates(overrides)]
    return Catalogue(
        models,
        balance_path=_strip(paths["account.balance"]),
        usage_path=_strip(paths["account.usage"]),
        llm_models_path=_strip(paths["llm.models"]),
    )


def _templates(overrides: CatalogueOverrides) -> list[ModelTemplate]:
    """The default models plus the operator's extra chat model ids."""
    known = {template.id for template in MODELS}
    extra = [chat_model(model_id) for model_id in dict.fromkeys(overrides.chat_models)]
    return [*MODELS, *(template for template in extra if template.id not in known)]


def _build_model(
    template: ModelTemplate, paths: Mapping[str, str], overrides: CatalogueOverrides
) -> ModelSpec:
    actions: dict[str, ActionSpec] = {}
    for action in template.actions:
        scoped = f"{template.id}:{action.name}"
        result_path = ""  # a synchronous action has nothing to poll
        if action.result_endpoint is not None:
            result_path = _strip(
                overrides.paths.get(f"{scoped}:result", paths[action.result_endpoint])
            )
        fallback = None
        if action.result_fallback_endpoint is not None:
            fallback = _strip(paths[action.result_fallback_endpoint])
        actions[action.name] = ActionSpec(
            name=action.name,
            submit_path=_strip(overrides.paths.get(f"{scoped}:submit", paths[action.endpoint])),
            result_path=result_path,
            params_model=action.params_model,
            prompt=action.prompt,
            images=action.images,
            source=action.source,
            body=action.body,
            result_field=action.result_field,
            produces=action.produces,
            expected_seconds=overrides.expected_seconds.get(
                scoped, overrides.expected_seconds.get(template.id, action.expected_seconds)
            ),
            price_points=overrides.prices.get(scoped, overrides.prices.get(template.id)),
            default_params=_default_params(template, action, overrides),
            result_fallback_path=fallback if fallback != result_path else None,
            usage_prices=_usage_prices(template, action, overrides),
        )
    return ModelSpec(
        id=template.id,
        provider=template.provider,
        family=template.family,
        title=template.title,
        default_action=template.actions[0].name,
        actions=MappingProxyType(actions),
    )


def _default_params(
    template: ModelTemplate, action: ActionTemplate, overrides: CatalogueOverrides
) -> Mapping[str, Any]:
    """The model's defaults, then the model's override, then the action's; checked against the
    action's params model so a wrong name or value stops the start-up rather than every submit."""
    scoped = f"{template.id}:{action.name}"
    merged = {
        **template.default_params,
        **overrides.default_params.get(template.id, {}),
        **overrides.default_params.get(scoped, {}),
    }
    chosen = {name: value for name, value in merged.items() if value is not None}
    try:
        action.params_model.model_validate(chosen)
    except ValidationError as exc:
        # A default need not fill the params the job must give (pan's direction).
        problems = [
            f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}"
            for e in exc.errors()
            if e["type"] != "missing"
        ]
        if problems:
            joined = "; ".join(problems)
            raise ValueError(f"catalogue default_params for {scoped}: {joined}") from None
    return MappingProxyType(chosen)


def _usage_prices(
    template: ModelTemplate, action: ActionTemplate, overrides: CatalogueOverrides
) -> UsagePrices:
    chosen = overrides.usage_prices.get(
        f"{template.id}:{action.name}", overrides.usage_prices.get(template.id)
    )
    return chosen.prices() if chosen is not None else UsagePrices()


def _scoped_keys(overrides: CatalogueOverrides) -> tuple[set[str], set[str]]:
    """(``model`` and ``model:action`` keys, ``model:action:submit|result`` keys)."""
    scoped: set[str] = set()
    path_keys: set[str] = set()
    for template in _templates(overrides):
        scoped.add(template.id)
        for action in template.actions:
            scoped.add(f"{template.id}:{action.name}")
            path_keys.update(f"{template.id}:{action.name}:{end}" for end in ("submit", "result"))
    return scoped, path_keys


def _check_override_keys(overrides: CatalogueOverrides) -> None:
    scoped, path_keys = _scoped_keys(overrides)
    unknown = [
        *(
            f"paths[{k!r}]"
            for k in overrides.paths
            if k not in DEFAULT_PATHS and k not in path_keys
        ),
        *(f"prices[{k!r}]" for k in overrides.prices if k not in scoped),
        *(f"expected_seconds[{k!r}]" for k in overrides.expected_seconds if k not in scoped),
        *(f"default_params[{k!r}]" for k in overrides.default_params if k not in scoped),
        *(f"usage_prices[{k!r}]" for k in overrides.usage_prices if k not in scoped),
    ]
    if unknown:
        raise ValueError(f"unknown catalogue override keys: {', '.join(unknown)}")


def _check_path(key: str, path: str, *, result: bool) -> None:
    if not _PATH_CHARS.match(path) or "//" in path:
        raise ValueError(f"catalogue path {key!r} must be a relative path like 'image/generate'")
    braces = path.count("{") + path.count("}")
    if result and (path.count("{id}") != 1 or braces != 2):
        raise ValueError(f"catalogue result path {key!r} must contain {{id}} exactly once")
    if not result and braces:
        raise ValueError(f"catalogue path {key!r} takes no placeholders")


def _strip(path: str) -> str:
    return path.strip("/")
