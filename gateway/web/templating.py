"""One Jinja environment for the pages: autoescape on for every template, strict undefined."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from litestar import Response
from litestar.enums import MediaType

TEMPLATES_DIR: Final = Path(__file__).resolve().parent / "templates"


def format_duration(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``, as video players show it."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


# autoescape=True (not select_autoescape): every template is HTML, and a template added
# later with an unexpected suffix must not silently lose escaping.
ENVIRONMENT: Final = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENVIRONMENT.filters["duration"] = format_duration


def render_page(template: str, *, status_code: int = 200, **context: Any) -> Response[str]:
    html = ENVIRONMENT.get_template(template).render(**context)
    return Response(
        content=html,
        status_code=status_code,
        media_type=MediaType.HTML,
        # Pages carry no secrets (the token lives in the browser), but stay fresh.
        headers={"cache-control": "no-cache"},
    )
