"""``python -m common.migrations <command> …``: alembic's CLI, its config built in code."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from alembic.config import CommandLine

from common.db import alembic_config
from common.settings import get_settings


def main(argv: Sequence[str] | None = None) -> None:
    cli = CommandLine(prog="python -m common.migrations")
    options = cli.parser.parse_args(argv)
    if not hasattr(options, "cmd"):
        cli.parser.error("too few arguments")
    cfg = alembic_config(get_settings().resolved_database_url)
    cfg.cmd_opts = options
    cli.run_cmd(cfg, options)


if __name__ == "__main__":
    main(sys.argv[1:])
