"""The `videopick` command's sub-command groups load only when one of them runs."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from common.cli import app

pytestmark = pytest.mark.unit


def test_help_lists_the_mounted_groups_without_importing_them() -> None:
    probe = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from common.cli import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(result.output)\n"
        "print(sorted(m for m in ('events.cli', 'gateway.projections.cli', 'nats')"
        " if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert "The event log: streams, tail, replay, dead letters." in done.stdout
    assert "Rebuild the gateway's catalog from the log." in done.stdout
    assert done.stdout.rstrip().endswith("[]"), done.stdout  # nothing of them imported


@pytest.mark.parametrize(
    ("group", "command"), [("events", "dead-letters"), ("projections", "rebuild")]
)
def test_a_mounted_group_runs_when_named(group: str, command: str) -> None:
    result = CliRunner().invoke(app, [group, "--help"])
    assert result.exit_code == 0, result.output
    assert command in result.output


def test_a_mistyped_group_gets_a_suggestion_before_it_is_loaded() -> None:
    result = CliRunner().invoke(app, ["event"])
    assert result.exit_code == 2
    assert "Did you mean 'events'?" in result.output
