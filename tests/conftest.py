"""Shared test configuration: each real service has its own fixture module."""

from __future__ import annotations

import os

import pytest

pytest_plugins = [
    "tests.fixtures.nats",
    "tests.fixtures.postgres",
    "tests.fixtures.minio",
    "tests.fixtures.gateway",
    "tests.fixtures.platform",
]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI nothing that should run may be skipped: a skip fails the run."""
    if not os.environ.get("CI"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped and exitstatus == 0 and reporter is not None:
        reporter.write_line(f"CI: {skipped} test(s) skipped; in CI every test must run", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
