"""The platform's components, in start order. Each is a package with ``__main__.py``."""

from __future__ import annotations

import importlib.util

COMPONENTS: tuple[str, ...] = ("gateway", "ingest", "chat", "uploader", "transcoder")


def available_components() -> list[str]:
    """The components this checkout can run (a later issue adds the rest)."""
    return [name for name in COMPONENTS if importlib.util.find_spec(f"{name}.__main__")]
