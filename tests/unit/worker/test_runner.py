"""`mcjobs worker` names its Celery node: `--hostname` when given, unique per process otherwise."""

from __future__ import annotations

import os

import pytest

from worker import runner
from worker.celery_app import app


def _argv(monkeypatch: pytest.MonkeyPatch, **options: object) -> list[str]:
    seen: list[list[str]] = []
    monkeypatch.setattr(app, "worker_main", lambda argv: seen.append(list(argv)))
    runner.run_worker(**options)  # type: ignore[arg-type]
    return seen[0]


def _hostname(argv: list[str]) -> str:
    return argv[argv.index("--hostname") + 1]


def test_a_given_hostname_names_the_node(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _hostname(_argv(monkeypatch, hostname="node-7@%h")) == "node-7@%h"


def test_without_one_each_process_on_a_machine_gets_its_own_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _hostname(_argv(monkeypatch)) == f"mcjobs-{os.getpid()}@%h"


def test_the_cli_passes_the_hostname_through(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from cli.main import app as cli

    seen: list[dict[str, object]] = []
    monkeypatch.setattr(runner, "run_worker", lambda **kw: seen.append(kw))
    result = CliRunner().invoke(cli, ["worker", "--concurrency", "1", "--hostname", "n1@%h"])
    assert result.exit_code == 0, result.output
    assert seen == [{"concurrency": 1, "loglevel": "INFO", "hostname": "n1@%h"}]
