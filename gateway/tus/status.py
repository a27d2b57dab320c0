"""Upload status for users: a projection of ``upload.*`` events.

``gateway_upload_status`` is written only here, only from events, so it can be dropped
and rebuilt by replaying the UPLOADS stream. The durable consumers of the four event
types run independently (and several gateway processes share them), so events of one
upload arrive in any order and twice: every write is one atomic upsert that only moves
forward — the offset never decreases, the state only climbs from ``uploading`` to a
final one (ready, rejected, expired, cancelled; the first final state wins). Applying
an event twice, or late, changes nothing.

``chunk.uploaded`` is not folded: while an upload is open the status endpoint asks the
engine (gateway/tus/simple.py), and the events that end an upload carry its offset.
Consuming every chunk cost about 1 ms of CPU per chunk across the gateway and
nats-server, beside the uploads it reported on (README, tus benchmark).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any, Final, cast

from faststream.nats import NatsBroker
from sqlalchemy import BigInteger, Table, Text, case, literal
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from common.db import UtcDateTime
from events.catalog import (
    UploadCompleted,
    UploadCreated,
    UploadExpired,
    UploadRejected,
)
from events.consumer import RetryPolicy, durable_subscriber
from events.envelope import Event
from gateway.tus.engine import CANCELLED_CODE
from gateway.tus.models import StatusState, UploadStatus

__all__ = [
    "CONSUMER_PREFIX",
    "EXPIRED_CODE",
    "EXPIRED_REASON",
    "apply_status_event",
    "register_status_subscribers",
]

CONSUMER_PREFIX: Final = "gateway-upload-status"
# What an expired upload's status says (also before the sweep, gateway/tus/simple.py).
EXPIRED_CODE: Final = "expired"
EXPIRED_REASON: Final = "the upload was not finished in time"
_TABLE = cast(Table, UploadStatus.__table__)
_FINAL = (StatusState.READY, StatusState.REJECTED, StatusState.EXPIRED, StatusState.CANCELLED)


def _rank_of(column: ColumnElement[Any]) -> ColumnElement[int]:
    return case(
        (column == StatusState.UPLOADING.value, 0),
        (column == StatusState.PROCESSING.value, 1),
        else_=2,
    )


def _rank(state: StatusState) -> int:
    return {StatusState.UPLOADING: 0, StatusState.PROCESSING: 1}.get(state, 2)


async def _upsert(
    session: AsyncSession,
    upload_id: str,
    *,
    state: StatusState,
    at: dt.datetime,
    offset: int = 0,
    fill: dict[str, Any] | None = None,
    final: dict[str, Any] | None = None,
    expires_at: dt.datetime | None = None,
) -> None:
    """Insert the row, or move the existing one forward (never back), in one statement.
    (``processing`` ranks between: rows of versions that folded chunks have it.)"""
    fill = fill or {}
    final = final or {}
    values: dict[str, Any] = {
        "upload_id": upload_id,
        "user_id": "",
        "size": -1,
        "state": state.value,
        "offset": offset,
        "updated_at": at,
        **fill,
        **final,
    }
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt: Any = insert(_TABLE).values(values)
    current = _TABLE.c
    climbs = _rank_of(current.state) < _rank(state)
    changes: dict[str, Any] = {
        "state": case((climbs, literal(state.value, Text())), else_=current.state),
        "offset": case(
            (current.offset < offset, literal(offset, BigInteger())), else_=current.offset
        ),
        "updated_at": literal(at, UtcDateTime()),
    }
    if expires_at is not None:  # only ever later
        values["expires_at"] = expires_at
        later = literal(expires_at, UtcDateTime())
        changes["expires_at"] = case(
            (current.expires_at.is_(None) | (current.expires_at < later), later),
            else_=current.expires_at,
        )
    # Identity fields (from upload.created) fill what a placeholder left empty.
    for name, value in fill.items():
        column = current[name]
        empty = (column == "") if name != "size" else (column < 0)
        changes[name] = case((empty, literal(value, column.type)), else_=column)
    # What a final state carries is written only by the event that makes it final.
    for name, value in final.items():
        changes[name] = case((climbs, literal(value, current[name].type)), else_=current[name])
    await session.execute(stmt.on_conflict_do_update(index_elements=["upload_id"], set_=changes))


async def apply_status_event(session: AsyncSession, event: Event) -> None:
    """Fold one event into ``gateway_upload_status`` (idempotent, order-insensitive)."""
    at = event.occurred_at
    if isinstance(event, UploadCreated):
        fill = {
            "user_id": event.user_id,
            "size": event.size,
            "filename": event.filename,
            "title": event.title,
        }
        await _upsert(
            session,
            event.upload_id,
            state=StatusState.UPLOADING,
            at=at,
            fill=fill,
            expires_at=event.expires_at,
        )
    elif isinstance(event, UploadCompleted):
        await _upsert(
            session,
            event.upload_id,
            state=StatusState.READY,
            at=at,
            offset=event.size,
            fill={"user_id": event.user_id, "size": event.size},
            final={"video_id": event.video_id},
        )
    elif isinstance(event, UploadRejected):
        cancelled = event.code == CANCELLED_CODE
        await _upsert(
            session,
            event.upload_id,
            state=StatusState.CANCELLED if cancelled else StatusState.REJECTED,
            at=at,
            offset=event.offset,
            fill={"user_id": event.user_id},
            final={"reason_code": event.code, "reason": event.reason},
        )
    elif isinstance(event, UploadExpired):
        await _upsert(
            session,
            event.upload_id,
            state=StatusState.EXPIRED,
            at=at,
            offset=event.offset,
            fill={"user_id": event.user_id, "size": event.size},
            final={"reason_code": EXPIRED_CODE, "reason": EXPIRED_REASON},
        )


StatusContext = Callable[[], async_sessionmaker[AsyncSession]]
Handler = Callable[..., Awaitable[None]]
# Folding is idempotent, so a retry is always safe; a few quick ones ride out a
# database restart, the dead-letter stream keeps anything stranger for redrive.
POLICY: Final = RetryPolicy(max_deliver=8, backoff_s=(1.0, 2.0, 5.0, 15.0, 60.0), ack_wait_s=30.0)


def register_status_subscribers(broker: NatsBroker, context: StatusContext) -> None:
    """One durable consumer per event type; ``context()`` gives the sessions.

    Ack policy (events.consumer.AckPolicyMiddleware): ack after the commit; any error
    naks with the backoff above (the fold is idempotent, so redelivery is harmless);
    undecodable payloads go to the dead-letter stream at once.
    """

    def subscriber(event_type: type[Event]) -> Callable[[Handler], Any]:
        return durable_subscriber(
            broker,
            event_type,
            durable=f"{CONSUMER_PREFIX}-{event_type.event_type().replace('.', '-')}",
            policy=POLICY,
            description=f"Upload status projection: {event_type.event_type()}",
        )

    async def fold(event: Event) -> None:
        async with context().begin() as session:
            await apply_status_event(session, event)

    @subscriber(UploadCreated)
    async def on_created(event: UploadCreated) -> None:
        await fold(event)

    @subscriber(UploadCompleted)
    async def on_completed(event: UploadCompleted) -> None:
        await fold(event)

    @subscriber(UploadRejected)
    async def on_rejected(event: UploadRejected) -> None:
        await fold(event)

    @subscriber(UploadExpired)
    async def on_expired(event: UploadExpired) -> None:
        await fold(event)
