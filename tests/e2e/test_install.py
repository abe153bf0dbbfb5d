"""The layout as installed: a plain (not editable) `pip install .` into a fresh virtualenv carries
every layer and the migrations, and `alembic` works from the repository root (docs/design.md)."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from tests.support.services import postgres_available, postgres_database

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtualenv with the project installed from a copy of the source, not editable."""
    home = tmp_path_factory.mktemp("wheel-venv")
    venv.EnvBuilder(with_pip=True).create(home / "venv")
    python = home / "venv" / "bin" / "python"
    run = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(ROOT)],
        cwd=home,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    yield home / "venv" / "bin"


def test_installed_packages_come_from_site_packages(installed: Path, tmp_path: Path) -> None:
    code = (
        "import api, cli, core, metachat, migrations, sim, worker\n"
        "for m in (api, cli, core, metachat, migrations, sim, worker):\n"
        "    print(m.__file__)\n"
    )
    out = subprocess.run(
        [str(installed / "python"), "-c", code],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert len(out) == 7
    assert all("site-packages" in path and str(ROOT) not in path for path in out), out


def test_mcjobs_migrate_from_the_wheel_on_empty_sqlite(installed: Path, tmp_path: Path) -> None:
    db_file = tmp_path / "fresh.sqlite3"
    url = f"sqlite:///{db_file}"
    run = subprocess.run(
        [str(installed / "mcjobs"), "migrate"],
        cwd=tmp_path,
        env=_env(DATABASE_URL=url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    engine = create_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"jobs", "batches", "job_events", "alembic_version"} <= tables


@pytest.mark.skipif(not postgres_available(), reason="needs PostgreSQL")
def test_alembic_check_from_the_root_on_migrated_postgres(installed: Path, tmp_path: Path) -> None:
    with postgres_database() as url:
        migrate = subprocess.run(
            [str(installed / "mcjobs"), "migrate"],
            cwd=tmp_path,
            env=_env(DATABASE_URL=url),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        for args in (["check"], ["current"]):
            run = subprocess.run(
                [str(installed / "alembic"), *args],
                cwd=ROOT,
                env=_env(DATABASE_URL=url),
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert run.returncode == 0, run.stdout + run.stderr
        assert "(head)" in run.stdout + run.stderr


def test_plain_alembic_upgrade_from_the_root(tmp_path: Path) -> None:
    """The repository's own `alembic upgrade head` (the development path) on an empty file."""
    url = f"sqlite:///{tmp_path / 'dev.sqlite3'}"
    alembic = Path(sys.executable).with_name("alembic")
    run = subprocess.run(
        [str(alembic), "upgrade", "head"],
        cwd=ROOT,
        env=_env(DATABASE_URL=url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    check = subprocess.run(
        [str(alembic), "check"],
        cwd=ROOT,
        env=_env(DATABASE_URL=url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
