"""The platform's components, in start order. Each is a package with ``__main__.py``."""

from __future__ import annotations

import importlib.util
import os

COMPONENTS: tuple[str, ...] = ("gateway", "ingest", "chat", "uploader", "transcoder")


def default_process_counts() -> dict[str, int]:
    """Processes per component unless ``VIDEOPICK_PROCESSES`` says otherwise (else 1).

    Ingest runs one process per core (one GIL each), sharing the RTMP port with
    SO_REUSEPORT: one process packages ~25 1080p30 publishers, two ~50 (issue #4).
    """
    return {"ingest": os.cpu_count() or 1}


def available_components() -> list[str]:
    """The components this checkout can run (a later issue adds the rest)."""
    return [name for name in COMPONENTS if importlib.util.find_spec(f"{name}.__main__")]
