"""``/static``: the web client's CSS, modules and the vendored npm libraries."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
VENDOR_DIR: Final = STATIC_DIR / "vendor"
# Copied from gateway/static/node_modules by the Makefile (`make install`).
VENDOR_FILES: Final = ("hls.min.js", "centrifuge.js", "tus.min.js")


def vendor_present() -> bool:
    return all((VENDOR_DIR / name).is_file() for name in VENDOR_FILES)


# no-cache: the browser revalidates (ETag), so a new release is picked up at once.
static_router: Final = create_static_files_router(
    path="/static",
    directories=[STATIC_DIR],
    cache_control=CacheControlHeader(no_cache=True),
    include_in_schema=False,
    name="web-static",
)
