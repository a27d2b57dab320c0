"""Log configuration: secrets masked, and calls below the level dropped before the chain."""

from __future__ import annotations

import logging
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
import structlog

from common.logs import configure_logging, get_logger, redact_secrets

pytestmark = pytest.mark.unit


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    yield
    structlog.configure(**config)
    root.handlers[:] = handlers
    root.setLevel(level)


def test_secrets_are_masked_whatever_the_call_site_passed() -> None:
    event = redact_secrets(
        None,
        "info",
        {"password": "p", "Authorization": "Bearer x", "stream_key": "k", "object_key": "o"},
    )
    assert event == {
        "password": "***",
        "Authorization": "***",
        "stream_key": "***",
        "object_key": "o",
    }


def test_a_call_below_the_level_never_reaches_the_processors(restored_logging: None) -> None:
    configure_logging("test", level="INFO")
    seen: list[str] = []

    def spy(_logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        seen.append(method)
        return event

    processors = structlog.get_config()["processors"]
    structlog.configure(processors=[*processors[:-1], spy, processors[-1]])
    log = get_logger("test.hot_path")
    log.debug("dropped early", upload_id="u")
    log.info("kept", upload_id="u")
    assert seen == ["info"]
