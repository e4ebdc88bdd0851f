"""Every command's help, as a user reads it: each option and argument says what it does, in the
product's own words, and flags show no type."""

from __future__ import annotations

import click
import pytest
import typer
from typer.testing import CliRunner

from tsav_deploy.cli import app


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


COMMANDS = dict(_commands(typer.main.get_command(app)))


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_every_parameter_has_help_and_flags_show_no_type(path):
    command = COMMANDS[path]
    assert command.help, path
    undocumented = [p.name for p in command.params if not getattr(p, "help", None) and p.name != "help"]
    assert not undocumented, (path, undocumented)
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    for word in ("<bool>", "issue", "TODO"):
        assert word not in result.output, (path, word)
    assert max(len(line) for line in result.output.splitlines()) <= 80, path  # wrapped, not cut
