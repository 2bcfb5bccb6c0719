"""The README is the user's door: it must name every variable, default and command."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.cli import build_parser
from worker.settings import describe

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(("name", "default"), [(n, d) for n, d, _ in describe()])
def test_every_variable_and_its_default(name: str, default: str) -> None:
    row = next((line for line in README.splitlines() if line.startswith(f"| `{name}` |")), None)
    assert row is not None, f"{name} is not in the README's environment table"
    assert f"`{default}`" in row


def test_every_command() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for command in sub.choices:  # type: ignore[union-attr]
        assert f"| `{command}" in README, command


def test_the_two_set_up_commands() -> None:
    assert "make run" in README
    assert "make test" in README
