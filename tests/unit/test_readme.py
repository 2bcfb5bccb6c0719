"""The README is the user's door: it must name every variable, default and command."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

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


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, Any]:
    """Every command a user runs ('run', 'publish pull', ...), with its parser."""
    found: dict[str, Any] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                inner = _commands(sub, f"{prefix}{name} ")
                found.update(inner or {f"{prefix}{name}": sub})
    return found


COMMANDS = _commands(build_parser())


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    return README[start:README.index("\n## ", start + 1)]


def _command_rows() -> dict[str, str]:
    """The Commands table: the command's words -> the row's first cell."""
    rows = {}
    for line in _section("Commands").splitlines():
        if line.startswith("| `") and not line.startswith("| command"):
            cell = line.split(" | ")[0][3:].split("`")[0]
            words = re.match(r"[a-z]+( [a-z]+)?", cell)
            assert words is not None, line
            name = words.group(0)
            rows[name if name in COMMANDS else name.split()[0]] = cell
    return rows


def test_the_commands_table_and_the_parser_name_the_same_commands() -> None:
    assert set(_command_rows()) == set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_readme_row_and_the_help_name_the_same_options(name: str) -> None:
    cell = _command_rows()[name]
    in_readme = set(re.findall(r"--[a-z][a-z-]*", cell))
    in_help = {o for a in COMMANDS[name]._actions for o in a.option_strings
               if o.startswith("--") and o != "--help"}
    assert in_readme == in_help


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_and_option_says_what_it_does(name: str) -> None:
    parser = COMMANDS[name]
    assert len(parser.description or "") > 80, name
    assert (parser.epilog or "").startswith("exit status: 0"), name
    for action in parser._actions:
        assert action.help, (name, action.dest)
        assert action.help != argparse.SUPPRESS, (name, action.dest)


def _plain(markdown: str) -> str:
    """A README table cell as --help prints it: no code marks; links to a section say so."""
    text = re.sub(r"\[([^\]]+)\]\(#[^)]+\)", r"\1 in the README", markdown)
    return re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", text).replace("`", "")


def test_the_environment_table_is_the_help() -> None:
    rows = {}
    for line in _section("Environment").splitlines():
        m = re.match(r"^\| `([A-Z_]+)` \| `([^`]*)` \| (.*) \|$", line)
        if m:
            rows[m.group(1)] = (m.group(2), _plain(m.group(3)))
    assert rows == {name: (default, text) for name, default, text in describe()}


def test_the_help_shows_each_default_once() -> None:
    for _, default, text in describe():
        assert f"({default})" not in text
