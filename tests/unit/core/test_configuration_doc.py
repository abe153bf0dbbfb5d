"""docs/configuration.md lists every setting the code reads."""

from __future__ import annotations

from pathlib import Path

from core.settings import Settings

DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def test_every_setting_is_documented() -> None:
    text = DOC.read_text()
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in text]
    assert missing == [], f"add these to docs/configuration.md: {missing}"
