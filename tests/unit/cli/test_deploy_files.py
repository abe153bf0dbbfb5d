"""docker-compose.yml names only commands the CLI really has."""

from __future__ import annotations

from pathlib import Path

import typer.main
import yaml

from cli.main import app

ROOT = Path(__file__).resolve().parents[3]
EXPECTED_SERVICES = {"postgres", "redis", "api", "worker", "beat", "sim", "flower"}


def _compose() -> dict[str, dict[str, object]]:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services: dict[str, dict[str, object]] = document["services"]
    return services


def _cli_has(argv: list[str]) -> bool:
    command: object = typer.main.get_command(app)
    for word in argv:
        if word.startswith("-"):
            break
        subcommands = getattr(command, "commands", None)
        if subcommands is None:
            return True
        sub = subcommands.get(word)
        if sub is None:
            return False
        command = sub
    return True


def test_compose_has_every_service_with_a_healthcheck() -> None:
    services = _compose()
    assert set(services) >= EXPECTED_SERVICES
    for name in EXPECTED_SERVICES:
        check = services[name].get("healthcheck")
        assert isinstance(check, dict) and check.get("test"), f"{name} has no healthcheck"


def test_every_mcjobs_command_in_compose_exists_in_the_cli() -> None:
    commands: list[list[str]] = []
    for service in _compose().values():
        command = service.get("command")
        if isinstance(command, list) and command[0] == "mcjobs":
            commands.append(command[1:])
        check = service.get("healthcheck")
        if isinstance(check, dict) and isinstance(check.get("test"), list):
            test = check["test"]
            if len(test) > 1 and test[1] == "mcjobs":
                commands.append(test[2:])
    assert len(commands) >= 6
    missing = [c for c in commands if not _cli_has(c)]
    assert missing == [], f"compose runs commands the CLI lacks: {missing}"


def test_cli_lookup_rejects_an_unknown_command() -> None:
    assert not _cli_has(["no-such-command"])
