"""Shared test configuration: each real service has its own fixture module."""

pytest_plugins = [
    "tests.fixtures.nats",
    "tests.fixtures.postgres",
    "tests.fixtures.minio",
]
