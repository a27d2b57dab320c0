"""API documentation: OpenAPI with Swagger UI at ``/schema``, AsyncAPI at ``/schema/asyncapi.json``.

Swagger UI comes from the npm registry, pinned by ``gateway/static/package-lock.json``
(``npm ci --prefix gateway/static``), and is served by the gateway itself: no CDN
(DESIGN.md), and the page obeys the site CSP — it has no inline script or style; its
start-up code is ``/schema/ui/init.js``. Without the npm assets the page still lists
the documents, without the interactive part.

The AsyncAPI document is built on first request from every component's bus module
(``events.asyncapi``) and cached; if that cannot be built, 503 problem+json.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Final

from litestar import Request, Response, Router, get
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.openapi.spec import Components, Tag
from litestar.params import FromPath
from litestar.status_codes import HTTP_503_SERVICE_UNAVAILABLE

from common.logs import get_logger
from common.settings import Settings
from gateway.auth.dependencies import SECURITY_SCHEMES
from gateway.errors import NotFoundError, problem_response

log = get_logger(__name__)

SCHEMA_PATH: Final = "/schema"
ASSETS_DIR: Final = Path(__file__).resolve().parent / "static/node_modules/swagger-ui-dist"
# Only these files are served: a fixed map, no path from the URL reaches the disk.
ASSETS: Final[dict[str, tuple[str, str]]] = {
    "swagger-ui-bundle.js": ("swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": ("swagger-ui.css", "text/css"),
    "favicon-32x32.png": ("favicon-32x32.png", "image/png"),
}
INIT_JS: Final = (
    "window.ui = SwaggerUIBundle({url: '" + SCHEMA_PATH + "/openapi.json', "
    "dom_id: '#swagger-ui', deepLinking: true, persistAuthorization: false});\n"
)


def swagger_assets_present() -> bool:
    return all((ASSETS_DIR / name).is_file() for name, _ in ASSETS.values())


class SwaggerPage(OpenAPIRenderPlugin):
    """Swagger UI from our own assets, with no inline script (see module docstring)."""

    def __init__(self) -> None:
        super().__init__(path=["/", "/swagger"], favicon="", style="")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        title = html.escape(str(openapi_schema.get("info", {}).get("title", "API")))
        links = (
            f'<p><a href="{SCHEMA_PATH}/openapi.json">OpenAPI (JSON)</a> · '
            f'<a href="{SCHEMA_PATH}/asyncapi.json">AsyncAPI (events)</a></p>'
        )
        if not swagger_assets_present():
            body = (
                f"<h1>{title}</h1>{links}<p>The interactive UI is not installed: run "
                "<code>npm ci --prefix gateway/static</code>.</p>"
            )
            head = ""
        else:
            head = (
                f'<link rel="icon" href="{SCHEMA_PATH}/ui/favicon-32x32.png">'
                f'<link rel="stylesheet" href="{SCHEMA_PATH}/ui/swagger-ui.css">'
            )
            body = (
                f'<noscript>{links}</noscript><div id="swagger-ui"></div>'
                f'<script src="{SCHEMA_PATH}/ui/swagger-ui-bundle.js"></script>'
                f'<script src="{SCHEMA_PATH}/ui/init.js"></script>'
            )
        page = (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{title}</title>{head}</head><body>{body}</body></html>"
        )
        return page.encode()


@get("/ui/{name:str}", include_in_schema=False, sync_to_thread=False)
def swagger_asset(name: FromPath[str]) -> Response[bytes]:
    if name == "init.js":
        return Response(INIT_JS.encode(), media_type="text/javascript")
    entry = ASSETS.get(name)
    if entry is None or not (ASSETS_DIR / entry[0]).is_file():
        raise NotFoundError(f"no documentation asset {name!r}")
    filename, media_type = entry
    return Response(
        (ASSETS_DIR / filename).read_bytes(),
        media_type=media_type,
        headers={"cache-control": "public, max-age=3600"},
    )


@get("/asyncapi.json", include_in_schema=False)
async def asyncapi_document(request: Request[Any, Any, Any]) -> Response[Any]:
    """The AsyncAPI document of every component's events (built once, then cached)."""
    state = request.app.state
    document = state.get("asyncapi_document")
    if document is None:
        try:
            from events.asyncapi import build_asyncapi, build_component_brokers

            settings: Settings = state["settings"]
            document = build_asyncapi(build_component_brokers(settings))
        except Exception as exc:  # any failure: the API works, its event docs do not
            log.warning("asyncapi unavailable", error=f"{type(exc).__name__}: {exc}")
            return problem_response(
                HTTP_503_SERVICE_UNAVAILABLE,
                "the AsyncAPI document cannot be built right now",
                headers={"Retry-After": "30"},
            )
        state["asyncapi_document"] = document
    return Response(document, media_type="application/json")


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="VideoPick API",
        version="2.0.0",
        description=(
            "REST API of the VideoPick gateway. Authenticate with `Authorization: Bearer "
            "<access_token>` from `/api/v2/auth/login`. Errors are `application/problem+json`. "
            f"Events: [{SCHEMA_PATH}/asyncapi.json]({SCHEMA_PATH}/asyncapi.json)."
        ),
        path=SCHEMA_PATH,
        render_plugins=[SwaggerPage()],
        openapi_router=Router(
            SCHEMA_PATH,
            route_handlers=[swagger_asset, asyncapi_document],
            include_in_schema=False,
        ),
        components=Components(security_schemes=dict(SECURITY_SCHEMES)),
        tags=[
            Tag(name="auth", description="accounts and access tokens"),
            Tag(name="streams", description="the caller's channel: stream key, start, stop"),
            Tag(name="operations", description="health and readiness"),
        ],
        use_handler_docstrings=True,
    )
