"""Structured logs for every process (structlog over the standard library).

Secrets never reach a log line: the ``redact_secrets`` processor masks any key that
looks like one, whatever the call site passed.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_MARKERS = ("password", "secret", "token", "stream_key", "authorization", "key")
_SAFE_KEYS = {"key_hash", "object_key", "stream_key_hash", "kid"}


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for name in list(event_dict):
        lowered = name.lower()
        if lowered in _SAFE_KEYS:
            continue
        if any(marker in lowered for marker in _SECRET_MARKERS):
            event_dict[name] = "***"
    return event_dict


def configure_logging(component: str, level: str = "INFO", json: bool = False) -> None:
    """Configure structlog and route stdlib loggers (uvicorn, faststream) through it."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    structlog.configure(
        # filter_by_level first: a call below the level ends before the chain runs (a
        # debug line on a hot path then costs one isEnabledFor, not four processors).
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries that chatter at INFO: keep their warnings, and alembic's migration steps.
    for noisy in ("alembic", "faststream", "nats", "uvicorn.access", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    logging.getLogger("alembic.runtime.migration").setLevel(root.level)
    structlog.contextvars.bind_contextvars(component=component)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
