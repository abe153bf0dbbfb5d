"""`mcjobs batch submit FILE`: specs read from JSON Lines, JSON or CSV, with line numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cli.specfile import SpecFileError, coerce, parse_assignments, read_specs


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_json_lines_skip_blanks_and_comments_and_keep_line_numbers(tmp_path: Path) -> None:
    path = _write(tmp_path, "s.jsonl", '# header\n{"prompt": "a"}\n\n{"prompt": "b"}\n')

    specs = read_specs(path)

    assert [(s.line, s.spec["prompt"]) for s in specs] == [(2, "a"), (4, "b")]


def test_a_json_file_may_hold_a_list_or_a_batch_body(tmp_path: Path) -> None:
    listed = read_specs(_write(tmp_path, "a.json", '[{"prompt": "a"}]'))
    wrapped = read_specs(_write(tmp_path, "b.json", '{"jobs": [{"prompt": "a"}]}'))

    assert [s.spec for s in listed] == [s.spec for s in wrapped] == [{"prompt": "a"}]


def test_csv_columns_map_to_spec_fields(tmp_path: Path) -> None:
    text = (
        "prompt,model,params.num,params.aspect,priority,images,sku,metadata.size,source_job_id,"
        "source_index\n"
        "a kite,flux-2-pro,2,16:9,3,https://x.test/1.png https://x.test/2.png,A-1,L,job_1,2\n"
        "plain,,,,,,,,,\n"
    )

    first, second = read_specs(_write(tmp_path, "s.csv", text))

    assert first.spec == {
        "prompt": "a kite",
        "model": "flux-2-pro",
        "params": {"num": 2, "aspect": "16:9"},
        "priority": 3,
        "images": [{"url": "https://x.test/1.png"}, {"url": "https://x.test/2.png"}],
        "metadata": {"sku": "A-1", "size": "L"},
        "source": {"job_id": "job_1", "index": 2},
    }
    assert (first.line, second.line, second.spec) == (2, 3, {"prompt": "plain"})


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        pytest.param("s.jsonl", '{"prompt": "a"}\n{oops\n', "line 2: not JSON", id="bad-json-line"),
        pytest.param(
            "s.jsonl", "[1, 2]\n", "line 1: a spec must be a JSON object", id="not-object"
        ),
        pytest.param("s.csv", "prompt,priority\na,high\n", "line 2: column priority", id="csv-num"),
        pytest.param("s.csv", "prompt,params\na,[1]\n", "must hold a JSON object", id="csv-json"),
        pytest.param("s.json", '{"a": 1}', "expected a JSON list", id="json-not-list"),
    ],
)
def test_unreadable_files_name_the_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(SpecFileError, match=message):
        read_specs(_write(tmp_path, name, text))


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SpecFileError, match=r"nope\.jsonl"):
        read_specs(str(tmp_path / "nope.jsonl"))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        pytest.param("16:9", "16:9", id="ratio-stays-text"),
        pytest.param("200", 200, id="number"),
        pytest.param("0.5", 0.5, id="fraction"),
        pytest.param("true", True, id="boolean"),
        pytest.param('["a","b"]', ["a", "b"], id="list"),
        pytest.param("raw", "raw", id="word"),
    ],
)
def test_values_are_json_when_they_parse(text: str, value: Any) -> None:
    assert coerce(text) == value


def test_assignments_need_a_name_and_an_equals_sign() -> None:
    assert parse_assignments(["a=1", "b=x=y"], what="--param") == {"a": 1, "b": "x=y"}
    assert parse_assignments(["sku=007"], what="--meta", typed=False) == {"sku": "007"}
    with pytest.raises(SpecFileError, match="NAME=VALUE"):
        parse_assignments(["novalue"], what="--param")
