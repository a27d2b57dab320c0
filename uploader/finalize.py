"""Finalizing an upload whose last byte is durable: assemble → sha256 → probe → publish.

Exactly one outcome per upload, however often the completion arrives:

1. **claim** — one conditional UPDATE moves the row ``open → finalizing`` with a lease
   (``claim_until``); a replica that loses the race retries later (transient error),
   a finished row makes the call a no-op. A finalizer that dies leaves a lapsed
   lease, which the redelivered completion takes over.
2. **work** — :func:`uploader.assembly.assemble` (idempotent), the SHA-256, the probe.
3. **publish** — ``upload.completed`` + ``transcode.requested`` (or ``upload.rejected``)
   with ids derived from the upload id (ids.py): a repeat after a crash is dropped by
   JetStream's duplicate window and by consumers' processed-event records.
4. **record** — the final state, in the same transaction as :func:`run_once`'s record
   of the triggering event.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any, Final, cast

from sqlalchemy import CursorResult, Table, or_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.logs import get_logger
from common.store import StoreError
from events.catalog import MediaProbe, TranscodeRequested, UploadCompleted, UploadRejected
from events.consumer import run_once
from events.envelope import Event
from uploader import ids
from uploader.assembly import MissingBytes, assemble, sha256_of
from uploader.layout import source_key
from uploader.lifecycle import UnknownUpload
from uploader.models import FINAL_STATES, State, UploaderUpload
from uploader.probe.runner import probe_object
from uploader.probe.verdict import Accepted, Code, Rejected, Verdict
from uploader.services import Services

__all__ = ["CONSUMER", "ClaimBusy", "finalize"]

log = get_logger(__name__)

CONSUMER: Final = "uploader-finalize"
# Long enough for a big file's hash and probe; renewed every third while working.
CLAIM_LEASE_S: Final = 300.0
_TABLE = cast(Table, UploaderUpload.__table__)

Heartbeat = Callable[[], Awaitable[None]]


class ClaimBusy(Exception):  # noqa: N818 - a verdict
    """Another finalizer holds this upload's claim: retry after it finished or lapsed."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def _claim(sessions: async_sessionmaker[AsyncSession], upload_id: str) -> bool:
    now = _now()
    column = _TABLE.c
    stmt = (
        update(_TABLE)
        .where(
            column.upload_id == upload_id,
            or_(
                column.state == State.OPEN.value,
                (column.state == State.FINALIZING.value) & (column.claim_until < now),
            ),
        )
        .values(
            state=State.FINALIZING.value,
            claim_until=now + dt.timedelta(seconds=CLAIM_LEASE_S),
            updated_at=now,
        )
    )
    async with sessions.begin() as session:
        result = cast(CursorResult[Any], await session.execute(stmt))
        return result.rowcount == 1


async def _renew(sessions: async_sessionmaker[AsyncSession], upload_id: str) -> None:
    column = _TABLE.c
    async with sessions.begin() as session:
        await session.execute(
            update(_TABLE)
            .where(column.upload_id == upload_id, column.state == State.FINALIZING.value)
            .values(claim_until=_now() + dt.timedelta(seconds=CLAIM_LEASE_S))
        )


async def _keep_alive(services: Services, upload_id: str, heartbeat: Heartbeat | None) -> None:
    """Renew the claim (and tell JetStream we are working) until cancelled."""
    while True:
        await asyncio.sleep(min(CLAIM_LEASE_S / 3, 20.0))
        with contextlib.suppress(Exception):
            await _renew(services.sessions, upload_id)
            if heartbeat is not None:
                await heartbeat()


async def finalize(
    services: Services,
    trigger: Event | None,
    upload_id: str,
    size: int,
    *,
    heartbeat: Heartbeat | None = None,
) -> None:
    """Bring ``upload_id`` (``size`` bytes, all durable) to its one final outcome."""
    async with services.sessions() as session:
        row = await session.get(UploaderUpload, upload_id)
    if row is None:
        raise UnknownUpload(f"completion of upload {upload_id} before its upload.created")
    if row.state in FINAL_STATES:
        log.info("finalize: already done", upload_id=upload_id, state=row.state)
        return
    if not await _claim(services.sessions, upload_id):
        async with services.sessions() as session:
            again = await session.get(UploaderUpload, upload_id, populate_existing=True)
        if again is not None and again.state in FINAL_STATES:
            return
        raise ClaimBusy(f"upload {upload_id} is being finalized elsewhere")
    keeper = asyncio.create_task(_keep_alive(services, upload_id, heartbeat))
    try:
        await _finalize_claimed(services, trigger, row, size)
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper


async def _finalize_claimed(
    services: Services, trigger: Event | None, row: UploaderUpload, size: int
) -> None:
    store = services.store
    sha256 = ""
    verdict: Verdict
    if size == 0:
        verdict = Rejected(Code.EMPTY, "0 bytes")
    else:
        try:
            key = await assemble(store, row.upload_id, size)
        except MissingBytes as exc:
            # Nothing to probe: the bytes are gone (swept or removed by hand).
            verdict = Rejected(Code.UNREADABLE, str(exc))
        else:
            sha256 = await sha256_of(store, key)
            verdict = await probe_object(store, key, size, services.settings)
    if isinstance(verdict, Accepted):
        video_id = await _publish_accepted(services, row, size, sha256, verdict)
        await _record(
            services, trigger, row.upload_id, State.COMPLETED, video_id=video_id, sha256=sha256
        )
        log.info("upload completed", upload_id=row.upload_id, video_id=video_id, size=size)
    else:
        await _publish_rejected(services, row, size, verdict)
        await _discard_source(services, row.upload_id)
        await _record(
            services,
            trigger,
            row.upload_id,
            State.REJECTED,
            sha256=sha256,
            reason_code=verdict.code.value,
            reason=verdict.reason,
        )
        log.info(
            "upload rejected", upload_id=row.upload_id, code=verdict.code, detail=verdict.detail
        )


async def _publish_accepted(
    services: Services, row: UploaderUpload, size: int, sha256: str, probe: Accepted
) -> str:
    video_id = ids.video_id(row.upload_id)
    key = source_key(row.upload_id)
    title = row.title or _title_from(row.filename)
    await services.publisher.publish(
        UploadCompleted(
            event_id=ids.event_id(row.upload_id, "upload.completed"),
            upload_id=row.upload_id,
            user_id=row.user_id,
            video_id=video_id,
            object_key=key,
            size=size,
            sha256=sha256,
            probe=MediaProbe(
                container=probe.container,
                duration_s=probe.duration_s,
                width=probe.width,
                height=probe.height,
                video_codec=probe.video_codec,
                audio_codec=probe.audio_codec,
                fps=probe.fps,
                bit_rate=probe.bit_rate,
            ),
            filename=row.filename,
            title=title,
            description=row.description,
        ),
        correlation_id=row.upload_id,
    )
    await services.publisher.publish(
        TranscodeRequested(
            event_id=ids.event_id(row.upload_id, "transcode.requested"),
            video_id=video_id,
            user_id=row.user_id,
            source_key=key,
            origin="upload",
            title=title,
            description=row.description,
            duration_s=probe.duration_s,
            width=probe.width,
            height=probe.height,
        ),
        correlation_id=row.upload_id,
    )
    return video_id


async def _publish_rejected(
    services: Services, row: UploaderUpload, size: int, verdict: Rejected
) -> None:
    await services.publisher.publish(
        UploadRejected(
            event_id=ids.event_id(row.upload_id, "upload.rejected"),
            upload_id=row.upload_id,
            user_id=row.user_id,
            code=verdict.code.value,
            reason=verdict.reason,
            offset=size,
        ),
        correlation_id=row.upload_id,
    )


async def _discard_source(services: Services, upload_id: str) -> None:
    # A rejected file is not kept: it is not a video, and may be hostile.
    with contextlib.suppress(StoreError):
        await services.store.delete(source_key(upload_id))


async def _record(
    services: Services, trigger: Event | None, upload_id: str, state: State, **values: str
) -> None:
    stmt = (
        update(_TABLE)
        .where(_TABLE.c.upload_id == upload_id)
        .values(state=state.value, claim_until=None, updated_at=_now(), **values)
    )

    async def effect(session: AsyncSession) -> None:
        await session.execute(stmt)

    # The final state commits with the record that this event was handled (run_once);
    # a sweep-triggered finalization has no event, and a repeat of one still lands.
    if trigger is None or not await run_once(services.sessions, CONSUMER, trigger, effect):
        async with services.sessions.begin() as session:
            await effect(session)


def _title_from(filename: str) -> str:
    stem = filename.rsplit(".", 1)[0] if "." in filename.strip(".") else filename
    return stem.strip()[:200] or "Untitled video"
