"""tus 1.0 at ``/files/``: the HTTP side only; the engine does the work.

    OPTIONS /files/         capabilities (no auth: clients ask before logging in)
    POST    /files/         creation (+ creation-with-upload, creation-defer-length)
    HEAD    /files/{id}     the durable offset (core §HEAD)
    PATCH   /files/{id}     append (core §PATCH, checksum)
    DELETE  /files/{id}     termination
    POST    /files/{id}     with X-HTTP-Method-Override: PATCH | DELETE (core §HTTP
                            Method Overriding, for clients behind PATCH-less proxies)

Every request but OPTIONS needs a bearer token; an upload is only visible to its
owner (anyone else gets 404). CORS — browsers reading Upload-Offset/Location across
origins — is the gateway's CORSMiddleware, which exposes the tus headers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from litestar import Request, Response, Router, delete, head, patch, post, route
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.enums import HttpMethod
from litestar.exceptions import HTTPException
from litestar.params import FromPath

from gateway.auth.dependencies import REQUIRES_AUTH, CurrentUserDep
from gateway.errors import UnavailableError, exception_handlers, problem_response
from gateway.http_socket_body import offered_socket_body
from gateway.tus import protocol
from gateway.tus.engine import AppendResult, UploadEngine
from gateway.tus.errors import BadRequest, RequestTimeout, TusError

__all__ = ["STATE_KEY", "TusEngineDep", "provide_engine", "tus_router"]

STATE_KEY = "tus_engine"
TAGS = ["uploads (tus)"]

# Handler parameter type: `tus: TusEngineDep`.
TusEngineDep = NamedDependency[UploadEngine]


def provide_engine(state: State) -> UploadEngine:
    engine = state.get(STATE_KEY)
    if not isinstance(engine, UploadEngine):
        raise UnavailableError("uploads are starting or stopping")
    return engine


_GATEWAY_HANDLERS = exception_handlers()


def http_error_response(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """The gateway's own answer (401 from the token check, 404…), plus Tus-Resumable,
    which tus wants on every response but OPTIONS."""
    handler = _GATEWAY_HANDLERS[HTTPException]
    response = handler(request, exc)
    response.headers.update(protocol.tus_headers())
    return response


def tus_error_response(_request: Request[Any, Any, Any], exc: TusError) -> Response[Any]:
    return problem_response(
        exc.status,
        exc.detail,
        slug=exc.slug,
        title=exc.title,
        headers={**protocol.tus_headers(), **exc.headers},
    )


def _patch_response(result: AppendResult) -> Response[None]:
    headers = protocol.patch_headers(offset=result.offset, expires=result.expires_at)
    if result.interrupted is not None and result.interrupted.reason == "timeout":
        # The bytes that came are stored (Upload-Offset says up to where).
        raise RequestTimeout(
            f"no data for a while; the upload is at {result.offset}, resume from there",
            headers={"Upload-Offset": str(result.offset)},
        )
    return Response(None, status_code=204, headers=headers)


@route(
    "/files",
    http_method=[HttpMethod.OPTIONS],
    status_code=204,
    tags=TAGS,
    summary="tus capabilities",
    sync_to_thread=False,
)
def tus_options(tus: TusEngineDep) -> Response[None]:
    """tus §OPTIONS: Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm."""
    return Response(None, status_code=204, headers=protocol.options_headers(tus.max_size))


@post(
    "/files",
    status_code=201,
    tags=TAGS,
    summary="Create a tus upload",
    security=REQUIRES_AUTH,
    request_max_body_size=None,
)
async def tus_create(
    request: Request[Any, Any, Any], current_user: CurrentUserDep, tus: TusEngineDep
) -> Response[None]:
    """tus creation. Upload-Length (or Upload-Defer-Length: 1) and Upload-Metadata
    (filename, title, description); with an application/offset+octet-stream body the
    first chunk is stored too (creation-with-upload)."""
    create = protocol.parse_creation(request.headers, max_size=tus.max_size)
    upload = await tus.create(current_user.user_id, create)
    offset: int | None = None
    expires: datetime | None = upload.expires_at
    location = tus.location(upload.id)
    if create.with_body:
        patch_request = protocol.PatchRequest(offset=0, length=None, checksum=create.checksum)
        try:
            result = await tus.append(
                current_user.user_id,
                upload.id,
                patch_request,
                request.receive,
                offered_socket_body(request.scope),
            )
            _patch_response(result)  # raises 408 for a stalled body
        except TusError as exc:
            # The upload exists even if its first chunk failed: say where, so the
            # client can resume instead of starting over.
            exc.headers.setdefault("Location", location)
            raise
        offset, expires = result.offset, result.expires_at
    headers = protocol.created_headers(location, offset=offset, expires=expires)
    return Response(None, status_code=201, headers=headers)


@head(
    "/files/{upload_id:str}",
    tags=TAGS,
    summary="The offset of a tus upload",
    security=REQUIRES_AUTH,
)
async def tus_head(
    upload_id: FromPath[str], current_user: CurrentUserDep, tus: TusEngineDep
) -> Response[None]:
    """tus §HEAD: Upload-Offset (what is durable), Upload-Length, no caching."""
    info = await tus.info(current_user.user_id, protocol.parse_upload_id(upload_id))
    headers = protocol.head_headers(
        offset=info.offset, length=info.length, metadata=info.metadata, expires=info.expires_at
    )
    return Response(None, status_code=200, headers=headers)


async def _do_patch(
    request: Request[Any, Any, Any],
    upload_id: FromPath[str],
    current_user: CurrentUserDep,
    tus: TusEngineDep,
) -> Response[None]:
    patch_request = protocol.parse_patch(request.headers, max_size=tus.max_size)
    result = await tus.append(
        current_user.user_id,
        protocol.parse_upload_id(upload_id),
        patch_request,
        request.receive,
        offered_socket_body(request.scope),
    )
    return _patch_response(result)


async def _do_delete(
    request: Request[Any, Any, Any],
    upload_id: FromPath[str],
    current_user: CurrentUserDep,
    tus: TusEngineDep,
) -> Response[None]:
    protocol.check_version(request.headers)
    await tus.terminate(current_user.user_id, protocol.parse_upload_id(upload_id))
    return Response(None, status_code=204, headers=protocol.tus_headers())


@patch(
    "/files/{upload_id:str}",
    status_code=204,
    tags=TAGS,
    summary="Append to a tus upload",
    security=REQUIRES_AUTH,
    request_max_body_size=None,
)
async def tus_patch(
    request: Request[Any, Any, Any],
    upload_id: FromPath[str],
    current_user: CurrentUserDep,
    tus: TusEngineDep,
) -> Response[None]:
    """tus §PATCH. Upload-Offset must equal the durable offset (409 otherwise); body as
    application/offset+octet-stream; optional Upload-Checksum (sha1, sha256; 460 when
    it differs). 204 means every byte of the answer's Upload-Offset is durable."""
    return await _do_patch(request, upload_id, current_user, tus)


@delete(
    "/files/{upload_id:str}",
    status_code=204,
    tags=TAGS,
    summary="Terminate a tus upload",
    security=REQUIRES_AUTH,
)
async def tus_delete(
    request: Request[Any, Any, Any],
    upload_id: FromPath[str],
    current_user: CurrentUserDep,
    tus: TusEngineDep,
) -> Response[None]:
    """tus termination: the stored bytes are removed; the URL answers 404 afterwards."""
    return await _do_delete(request, upload_id, current_user, tus)


@post(
    "/files/{upload_id:str}",
    status_code=204,
    tags=TAGS,
    summary="PATCH or DELETE through X-HTTP-Method-Override",
    security=REQUIRES_AUTH,
    request_max_body_size=None,
)
async def tus_override(
    request: Request[Any, Any, Any],
    upload_id: FromPath[str],
    current_user: CurrentUserDep,
    tus: TusEngineDep,
) -> Response[None]:
    """tus core §"X-HTTP-Method-Override": a POST that stands for a PATCH or a DELETE."""
    method = request.headers.get("x-http-method-override", "").strip().upper()
    if method == "PATCH":
        return await _do_patch(request, upload_id, current_user, tus)
    if method == "DELETE":
        return await _do_delete(request, upload_id, current_user, tus)
    raise BadRequest("POST to an upload needs X-HTTP-Method-Override: PATCH or DELETE")


tus_router = Router(
    path="/",
    route_handlers=[tus_options, tus_create, tus_head, tus_patch, tus_delete, tus_override],
    dependencies={"tus": Provide(provide_engine, sync_to_thread=False)},
    exception_handlers={TusError: tus_error_response, HTTPException: http_error_response},
)
