"""The simple upload API, on the same engine as tus (same rules, same status codes).

    POST /api/v2/upload/init       {filename, size, title, description}
                                   → {upload_id, chunk_size, upload_url, expires_at}
    POST /api/v2/upload/chunk?upload_id=…&offset=…
                                   raw bytes (application/octet-stream) → {offset, …}
    POST /api/v2/upload/complete   {upload_id} → the status (409 while bytes are missing)
    GET  /api/v2/upload/{id}       state, offset, size, video id, rejection reason

``chunk`` takes the bytes as the raw body and the position as query parameters: no
multipart parsing, nothing held whole in memory, and the body streams into the store
as tus PATCH bodies do (an optional ``Upload-Checksum`` header works the same too).
``upload_url`` is the tus URL of the same upload: a client may switch to tus to resume.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.di import Provide
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.auth.dependencies import REQUIRES_AUTH, CurrentUserDep
from gateway.errors import problem_response
from gateway.http_socket_body import offered_socket_body
from gateway.services import ServicesDep
from gateway.tus import protocol
from gateway.tus.checksum import parse_checksum
from gateway.tus.engine import UploadEngine, UploadInfo
from gateway.tus.errors import (
    RequestTimeout,
    TusError,
    UploadGone,
    UploadNotFound,
    WrongContentType,
)
from gateway.tus.metadata import (
    MAX_DESCRIPTION_CHARS,
    MAX_TITLE_CHARS,
    UploadMetadata,
    check_description,
    check_filename,
    check_title,
)
from gateway.tus.models import StatusState, UploadStatus
from gateway.tus.routes import TusEngineDep, provide_engine
from gateway.tus.status import EXPIRED_CODE, EXPIRED_REASON

__all__ = ["upload_api_router"]

TAGS = ["uploads"]
CHUNK_TYPES = ("application/octet-stream", protocol.OFFSET_OCTET_STREAM)
UploadId = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{32}$")]


class InitRequest(msgspec.Struct, forbid_unknown_fields=True):
    filename: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    size: Annotated[int, msgspec.Meta(ge=0)]
    title: Annotated[str, msgspec.Meta(max_length=MAX_TITLE_CHARS)] = ""
    description: Annotated[str, msgspec.Meta(max_length=MAX_DESCRIPTION_CHARS)] = ""


class InitResponse(msgspec.Struct):
    upload_id: str
    chunk_size: int
    upload_url: str
    max_size: int
    expires_at: dt.datetime | None


class ChunkResponse(msgspec.Struct):
    upload_id: str
    offset: int
    size: int | None
    complete: bool


class CompleteRequest(msgspec.Struct, forbid_unknown_fields=True):
    upload_id: UploadId


class StatusResponse(msgspec.Struct):
    upload_id: str
    state: str
    offset: int
    size: int | None
    filename: str
    title: str
    video_id: str = ""
    reason_code: str = ""
    reason: str = ""
    expires_at: dt.datetime | None = None


def _error(_request: Request[Any, Any, Any], exc: TusError) -> Response[Any]:
    return problem_response(
        exc.status, exc.detail, slug=exc.slug, title=exc.title, headers=exc.headers
    )


@dataclass
class ChunkOperation(Operation):
    """OpenAPI for ``chunk``: the body is raw bytes, which no handler parameter shows."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            description="The chunk's bytes, starting at `offset`.",
            required=True,
            content={
                "application/octet-stream": OpenAPIMediaType(
                    schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
                )
            },
        )


@post("/init", status_code=201, tags=TAGS, summary="Start an upload", security=REQUIRES_AUTH)
async def upload_init(
    data: JSONBody[InitRequest], current_user: CurrentUserDep, tus: TusEngineDep
) -> InitResponse:
    """Create an upload of ``size`` bytes; send it in chunks of about ``chunk_size``."""
    metadata = UploadMetadata(
        filename=check_filename(data.filename),
        title=check_title(data.title),
        description=check_description(data.description),
    )
    create = protocol.CreateRequest(
        length=data.size, metadata=metadata, with_body=False, checksum=None
    )
    upload = await tus.create(current_user.user_id, create)
    return InitResponse(
        upload_id=upload.id,
        chunk_size=tus.chunk_size,
        upload_url=tus.location(upload.id),
        max_size=tus.max_size,
        expires_at=None if upload.length == 0 else upload.expires_at,
    )


@post(
    "/chunk",
    status_code=200,
    tags=TAGS,
    summary="Send a chunk",
    security=REQUIRES_AUTH,
    operation_class=ChunkOperation,
    request_max_body_size=None,
)
async def upload_chunk(
    request: Request[Any, Any, Any],
    upload_id: Annotated[str, QueryParameter(pattern="^[0-9a-f]{32}$")],
    offset: Annotated[int, QueryParameter(ge=0)],
    current_user: CurrentUserDep,
    tus: TusEngineDep,
) -> ChunkResponse:
    """Append the raw body at ``offset`` (409 with the real offset if it is not the
    end of what is stored). A 200 means those bytes are durable. The last chunk
    starts the processing."""
    if protocol.media_type(request.headers) not in CHUNK_TYPES:
        raise WrongContentType("send the chunk as application/octet-stream")
    patch_request = protocol.PatchRequest(
        offset=offset,
        length=None,
        checksum=parse_checksum(request.headers.get("upload-checksum")),
    )
    result = await tus.append(
        current_user.user_id,
        upload_id,
        patch_request,
        request.receive,
        offered_socket_body(request.scope),
    )
    if result.interrupted is not None and result.interrupted.reason == "timeout":
        raise RequestTimeout(f"no data for a while; the upload is at {result.offset}")
    return ChunkResponse(
        upload_id=result.upload_id,
        offset=result.offset,
        size=result.length,
        complete=result.complete,
    )


@post("/complete", status_code=200, tags=TAGS, summary="Finish an upload", security=REQUIRES_AUTH)
async def upload_complete(
    data: JSONBody[CompleteRequest],
    current_user: CurrentUserDep,
    tus: TusEngineDep,
    services: ServicesDep,
) -> StatusResponse:
    """Confirm every byte arrived (409 with the offset otherwise); answers the status."""
    info = await tus.ensure_completion(current_user.user_id, data.upload_id)
    return await _status(services.sessions, tus, current_user.user_id, info)


@get("/{upload_id:str}", tags=TAGS, summary="Upload status", security=REQUIRES_AUTH)
async def upload_status(
    upload_id: FromPath[str],
    current_user: CurrentUserDep,
    tus: TusEngineDep,
    services: ServicesDep,
) -> StatusResponse:
    """Where an upload is: uploading (offset of size), processing, ready (video id),
    rejected (with the reason to show), expired or cancelled."""
    upload_id = protocol.parse_upload_id(upload_id)
    try:
        info: UploadInfo | None = await tus.info(current_user.user_id, upload_id)
    except UploadGone:
        # Expired, not swept yet: the projection hears of it only from the sweeper.
        return await _expired(services.sessions, tus, current_user.user_id, upload_id)
    except TusError:
        info = None  # gone from the engine (cancelled, complete): the projection knows
    return await _status(services.sessions, tus, current_user.user_id, info, upload_id)


async def _expired(
    sessions: async_sessionmaker[AsyncSession], tus: UploadEngine, user_id: str, upload_id: str
) -> StatusResponse:
    try:
        swept: StatusResponse | None = await _status(sessions, tus, user_id, None, upload_id)
    except UploadNotFound:
        swept = None  # the projection has not seen it yet
    if swept is not None and swept.state != StatusState.UPLOADING:
        return swept
    row = await tus.owned(user_id, upload_id)
    return StatusResponse(
        upload_id=upload_id,
        state=StatusState.EXPIRED.value,
        offset=await tus.offset_held(row),
        size=row.length,
        filename=row.filename,
        title=row.title,
        reason_code=EXPIRED_CODE,
        reason=EXPIRED_REASON,
    )


async def _status(
    sessions: async_sessionmaker[AsyncSession],
    tus: UploadEngine,
    user_id: str,
    info: UploadInfo | None,
    upload_id: str | None = None,
) -> StatusResponse:
    upload_id = info.upload_id if info is not None else upload_id
    async with sessions() as session:
        row = await session.get(UploadStatus, upload_id)
    if row is not None and row.user_id != user_id:
        row = None
    if row is None and info is None:
        raise UploadNotFound("no such upload")
    if info is not None and (row is None or row.state == StatusState.UPLOADING):
        # Not yet (or not visibly) past uploading: the engine's view is the fresher.
        engine_row = await tus.owned(user_id, info.upload_id)
        return StatusResponse(
            upload_id=info.upload_id,
            state=(StatusState.PROCESSING if info.complete else StatusState.UPLOADING).value,
            offset=info.offset,
            size=info.length,
            filename=engine_row.filename,
            title=engine_row.title,
            expires_at=info.expires_at,
        )
    assert row is not None
    return StatusResponse(
        upload_id=row.upload_id,
        state=row.state,
        offset=row.offset,
        size=None if row.size < 0 else row.size,
        filename=row.filename,
        title=row.title,
        video_id=row.video_id,
        reason_code=row.reason_code,
        reason=row.reason,
        expires_at=row.expires_at if row.state == StatusState.UPLOADING else None,
    )


upload_api_router = Router(
    path="/api/v2/upload",
    route_handlers=[upload_init, upload_chunk, upload_complete, upload_status],
    dependencies={"tus": Provide(provide_engine, sync_to_thread=False)},
    exception_handlers={TusError: _error},
)
