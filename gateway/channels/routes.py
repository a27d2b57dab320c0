"""``/api/v2/streams``: the caller's stream key, and start/stop of their broadcast.

Every route acts on the caller's own channel, found from the token's ``user_id``: no
route takes a stream id, so there is nothing to point at another user's channel.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, get, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.logs import get_logger
from common.settings import Settings
from events.catalog import ChannelKeyRotated, ChannelUpdated, StreamStopRequested
from gateway.auth.dependencies import REQUIRES_AUTH, CurrentUser, CurrentUserDep
from gateway.auth.routes import correlation_id
from gateway.channels.keys import HASH_ALGORITHM, KeyBoxError, hash_stream_key, new_stream_key
from gateway.channels.models import Channel
from gateway.errors import ApiError, UnauthorizedError
from gateway.services import Services, ServicesDep

log = get_logger(__name__)


class StreamKeyOut(msgspec.Struct):
    stream_key: str
    stream_id: str
    rtmp_url: str
    playback_url: str
    chat_channel: str
    rotated_at: dt.datetime
    # True when this answer had to make a new key (the stored one could not be opened).
    rotated: bool = False


class StartRequest(msgspec.Struct, forbid_unknown_fields=True):
    # pattern: at least one visible character (re.search semantics).
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=140, pattern=r"\S")]
    description: Annotated[str, msgspec.Meta(max_length=5000)] = ""


class ChannelOut(msgspec.Struct):
    stream_id: str
    title: str
    description: str
    updated_at: dt.datetime


class StopOut(msgspec.Struct):
    stream_id: str
    status: str = "stop_requested"


def _key_out(settings: Settings, channel: Channel, key: str, *, rotated: bool) -> StreamKeyOut:
    return StreamKeyOut(
        stream_key=key,
        stream_id=channel.stream_id,
        rtmp_url=settings.rtmp_public_url,
        playback_url=f"{settings.public_url.rstrip('/')}/live/{channel.stream_id}/index.m3u8",
        chat_channel=f"chat:{channel.stream_id}",
        rotated_at=channel.key_rotated_at,
        rotated=rotated,
    )


async def _own_channel(session: AsyncSession, user: CurrentUser, *, lock: bool = False) -> Channel:
    query = select(Channel).where(Channel.user_id == user.user_id)
    if lock:
        query = query.with_for_update()  # PostgreSQL: one rotation at a time per channel
    channel = await session.scalar(query)
    if channel is None:
        raise UnauthorizedError("the token's account no longer exists")
    return channel


async def _rotate(
    services: Services, user: CurrentUser, request: Request[Any, Any, Any]
) -> StreamKeyOut:
    async with services.sessions() as session, session.begin():
        channel = await _own_channel(session, user, lock=True)
        key = new_stream_key()
        channel.key_hash = hash_stream_key(key)
        channel.key_box = services.key_box.seal(channel.stream_id, key)
        channel.key_rotated_at = dt.datetime.now(dt.UTC)
        await session.flush()
        # Inside the transaction: a refused publish rolls the rotation back (503), so
        # the database and ingest never disagree about the current key.
        await services.publisher.publish(
            ChannelKeyRotated(
                stream_id=channel.stream_id,
                user_id=user.user_id,
                key_hash=channel.key_hash,
                hash_algorithm=HASH_ALGORITHM,
            ),
            correlation_id=correlation_id(request),
        )
    log.info("stream key rotated", stream_id=channel.stream_id, user_id=user.user_id)
    return _key_out(services.settings, channel, key, rotated=True)


@get("/key", security=REQUIRES_AUTH, summary="The caller's stream key and URLs")
async def get_stream_key(
    current_user: CurrentUserDep, services: ServicesDep, request: Request[Any, Any, Any]
) -> StreamKeyOut:
    """OBS settings: server = `rtmp_url`, stream key = `stream_key`. Keep the key secret."""
    async with services.sessions() as session:
        channel = await _own_channel(session, current_user)
    try:
        key = services.key_box.open(channel.stream_id, channel.key_box)
    except KeyBoxError as exc:
        # Unrecoverable by design (keys.py): issue a new one rather than fail forever.
        log.warning(
            "stream key box unreadable; rotating", stream_id=channel.stream_id, error=str(exc)
        )
        return await _rotate(services, current_user, request)
    return _key_out(services.settings, channel, key, rotated=False)


@post("/key/rotate", status_code=HTTP_200_OK, security=REQUIRES_AUTH, summary="New stream key")
async def rotate_stream_key(
    current_user: CurrentUserDep, services: ServicesDep, request: Request[Any, Any, Any]
) -> StreamKeyOut:
    """The old key stops working for new publishes; publishes `channel.key_rotated` (hash)."""
    return await _rotate(services, current_user, request)


@post("/start", status_code=HTTP_200_OK, security=REQUIRES_AUTH, summary="Set broadcast metadata")
async def start_stream(
    data: JSONBody[StartRequest],
    current_user: CurrentUserDep,
    services: ServicesDep,
    request: Request[Any, Any, Any],
) -> ChannelOut:
    """Title and description of the broadcast, before or during a live (`channel.updated`)."""
    title = data.title.strip()
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in title):
        raise ApiError("title: control characters are not allowed")
    description = data.description.replace("\r\n", "\n")
    if any((ord(ch) < 32 and ch not in "\n\t") or ord(ch) == 127 for ch in description):
        raise ApiError("description: control characters other than newline and tab are not allowed")
    async with services.sessions() as session, session.begin():
        channel = await _own_channel(session, current_user, lock=True)
        channel.title, channel.description = title, description
        channel.updated_at = dt.datetime.now(dt.UTC)
        await session.flush()
        await services.publisher.publish(
            ChannelUpdated(
                stream_id=channel.stream_id,
                user_id=current_user.user_id,
                title=title,
                description=description,
            ),
            correlation_id=correlation_id(request),
        )
    return ChannelOut(
        stream_id=channel.stream_id,
        title=channel.title,
        description=channel.description,
        updated_at=channel.updated_at,
    )


@post("/stop", status_code=HTTP_202_ACCEPTED, security=REQUIRES_AUTH, summary="End the live")
async def stop_stream(
    current_user: CurrentUserDep, services: ServicesDep, request: Request[Any, Any, Any]
) -> StopOut:
    """Asks ingest to disconnect the publisher (`stream.stop_requested`); 202: it is async."""
    async with services.sessions() as session:
        channel = await _own_channel(session, current_user)
    await services.publisher.publish(
        StreamStopRequested(stream_id=channel.stream_id, user_id=current_user.user_id),
        correlation_id=correlation_id(request),
    )
    return StopOut(stream_id=channel.stream_id)


channels_router = Router(
    "/api/v2/streams",
    route_handlers=[get_stream_key, rotate_stream_key, start_stream, stop_stream],
    tags=["streams"],
)
