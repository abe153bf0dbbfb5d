"""docs/api.md lists every `error.code` a job can end with: the table, `worker/codes.py` and the
codes the source actually writes are one and the same set."""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from worker import codes

ROOT = Path(__file__).resolve().parents[3]
# Where job rows are written; `error_code` appears nowhere else.
SOURCE_PACKAGES = ("core", "worker", "api")
ROW = re.compile(r"^\| `([a-z_]+)` \|")


def _documented() -> list[str]:
    text = (ROOT / "docs" / "api.md").read_text()
    section = text.split("### Error codes", 1)[1].split("\n## ", 1)[0]
    return [m.group(1) for line in section.splitlines() if (m := ROW.match(line))]


def _named() -> set[str]:
    return {getattr(codes, name) for name in codes.__all__}


def _code_expressions(tree: ast.AST) -> Iterator[ast.expr]:
    """What is written as a job's error code: ``"error_code": X`` in a dict, ``error_code=X``,
    and a verdict's ``code=X``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "error_code":
                    yield value
        elif isinstance(node, ast.keyword) and node.arg in ("error_code", "code"):
            yield node.value
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "codes"
        ):
            yield node


def _resolve(expr: ast.expr, module: ModuleType) -> str | None:
    """The string `expr` names in `module`, or None for a variable passed along (its source is
    found where it was made) or a None."""
    if isinstance(expr, ast.Constant):
        return expr.value if isinstance(expr.value, str) else None
    if isinstance(expr, ast.Name) and expr.id.isupper():
        value = getattr(module, expr.id)
        assert isinstance(value, str), f"{module.__name__}.{expr.id} is not a code"
        return value
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
        owner = getattr(module, expr.value.id, None)
        if isinstance(owner, ModuleType):
            value = getattr(owner, expr.attr)
            assert isinstance(value, str), f"{owner.__name__}.{expr.attr} is not a code"
            return value
    return None


def _written_codes() -> dict[str, str]:
    """Every code the source writes, with where it was found."""
    found: dict[str, str] = {}
    for package in SOURCE_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            source = path.read_text()
            if "error_code" not in source and "codes." not in source and "code=" not in source:
                continue
            relative = path.relative_to(ROOT)
            name = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
            module = importlib.import_module(name)
            for expr in _code_expressions(ast.parse(source)):
                code = _resolve(expr, module)
                if code is not None:
                    found.setdefault(code, f"{relative}:{expr.lineno}")
    return found


def test_the_doc_table_lists_each_named_code_once() -> None:
    documented = _documented()
    assert len(documented) == len(set(documented)), documented
    assert set(documented) == _named()


def test_every_code_the_source_writes_is_named_and_documented() -> None:
    written = _written_codes()
    assert {"upstream_failed", "cancelled", "budget_exceeded"} <= set(written)
    unnamed = {code: where for code, where in written.items() if code not in _named()}
    assert unnamed == {}, "add these to worker/codes.py and the table in docs/api.md"
    undocumented = set(written) - set(_documented())
    assert undocumented == set()
