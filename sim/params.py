"""Rules for the ``params`` object of a submit, one small predicate per value.

MetaChat answers a bad value with one fixed refusal message, so a rule only has to say yes or no.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


class ParamRule(Protocol):
    """Says whether one ``params`` value is acceptable."""

    def accepts(self, value: object) -> bool:
        """True when ``value`` is allowed for this parameter."""
        ...


@dataclass(frozen=True)
class OneOf:
    """The value is one of a fixed set (compared by equality, so ``1`` and ``1.0`` match)."""

    choices: tuple[object, ...]

    def accepts(self, value: object) -> bool:
        if isinstance(value, bool):
            return value in [c for c in self.choices if isinstance(c, bool)]
        return value in self.choices


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of integers, as JSON integers (no ``true`` for 1, no ``2.0``)."""

    choices: tuple[int, ...]

    def accepts(self, value: object) -> bool:
        return type(value) is int and value in self.choices


@dataclass(frozen=True)
class IntRange:
    """An integer within ``[low, high]``."""

    low: int
    high: int

    def accepts(self, value: object) -> bool:
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and self.low <= value <= self.high
        )


@dataclass(frozen=True)
class NumberRange:
    """A number within ``[low, high]``."""

    low: float
    high: float

    def accepts(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return self.low <= value <= self.high


@dataclass(frozen=True)
class Text:
    """A non-empty string of at most ``max_length`` characters."""

    max_length: int = 200

    def accepts(self, value: object) -> bool:
        return isinstance(value, str) and 0 < len(value) <= self.max_length


@dataclass(frozen=True)
class Flag:
    """A JSON boolean."""

    def accepts(self, value: object) -> bool:
        return isinstance(value, bool)


_RATIO = re.compile(r"^[1-9][0-9]{0,2}:[1-9][0-9]{0,2}$")


@dataclass(frozen=True)
class Ratio:
    """A free ``W:H`` aspect ratio such as ``16:9`` (Midjourney accepts any)."""

    def accepts(self, value: object) -> bool:
        return isinstance(value, str) and _RATIO.match(value) is not None


@dataclass(frozen=True)
class Words:
    """A list of short words without spaces, or one such word (Midjourney's ``no``)."""

    def accepts(self, value: object) -> bool:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            return False
        return all(isinstance(w, str) and w and " " not in w for w in items)


def params_are_valid(params: Mapping[str, object], rules: Mapping[str, ParamRule]) -> bool:
    """True when every key is known and every value is accepted by its rule."""
    for key, value in params.items():
        rule = rules.get(key)
        if rule is None or not rule.accepts(value):
            return False
    return True
