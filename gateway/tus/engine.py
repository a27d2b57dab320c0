"""The upload engine: what tus (``/files/``) and the simple API (``/api/v2/upload/*``) share.

State lives in three places, each the authority for one thing:

- the object store: the bytes, hence the offset (chunks.py derives it; no counter);
- ``gateway_uploads``: who owns the upload, its length and metadata, whether it is
  open, complete or terminated, its expiry, and the PATCH lock (leases.py);
- the event log: ``upload.created`` when an upload exists, ``chunk.uploaded`` after
  each chunk is durable, the last one with ``complete=True``, which is what makes the
  uploader assemble and probe the file.

A PATCH is answered as soon as its bytes are durable (all a tus 204 promises). The
last chunk's event is published before the answer, since the upload's completion
hangs on it; an intermediate chunk's event follows the answer, and its lock is handed
to the upload's next PATCH when that comes to this process soon enough
(settling.py).

The completion event has a deterministic id (:func:`completion_event_id`). If it could
not be published, the upload stays ``open`` with every byte stored, and the next HEAD,
PATCH or simple-API call publishes it again (JetStream drops the duplicate within its
window; the uploader's own state drops it after). An upload's expiry slides: it is
``tus_expiry_s`` after its last *published* durable chunk, the same instant the
uploader's sweeper counts from (uploader/sweeper.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.logs import get_logger
from common.settings import Settings
from common.store import MultipartUpload, ObjectStore, StoreError
from common.store import UploadNotFound as StoreUploadNotFound
from events.catalog import ChunkUploaded, UploadCreated, UploadRejected
from events.envelope import new_event_id
from events.publisher import EventPublisher, PublishError
from gateway.http_socket_body import DirectBody, SocketBody
from gateway.tus.body import BodyInterrupted, Receive, ThreadBodyReader, read_body
from gateway.tus.chunks import ChunkWriter, DurableState, WriteResult, load_state, part_sizes
from gateway.tus.errors import (
    BadRequest,
    OffsetMismatch,
    StorageUnavailable,
    TooLarge,
    UploadComplete,
    UploadGone,
    UploadLocked,
    UploadNotFound,
)
from gateway.tus.layout import source_key, upload_prefix
from gateway.tus.leases import LeaseKeeper, acquire
from gateway.tus.metadata import UploadMetadata
from gateway.tus.models import EngineState, Upload
from gateway.tus.protocol import CreateRequest, PatchRequest, new_upload_id
from gateway.tus.settling import Parked, Settling
from gateway.tus.spool import Spool

__all__ = ["AppendResult", "UploadEngine", "UploadInfo", "completion_event_id"]

log = get_logger(__name__)

PRODUCER: Final = "gateway"
# A PATCH that finds the lock held polls this long before its 423: the holder may be
# another process releasing it after its answer (see the module doc).
LOCK_WAIT_S: Final = 0.5
LOCK_POLL_S: Final = 0.02
_EVENT_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "videopick:uploads")
CANCELLED_CODE: Final = "cancelled"


def completion_event_id(upload_id: str) -> str:
    """The one id every publication of an upload's completion uses."""
    return str(uuid.uuid5(_EVENT_NAMESPACE, f"chunk.uploaded:{upload_id}:complete"))


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class UploadInfo:
    upload_id: str
    offset: int
    length: int | None
    metadata: UploadMetadata
    expires_at: datetime | None  # None once complete (tus: only unfinished uploads expire)
    complete: bool


@dataclass(frozen=True, slots=True)
class AppendResult:
    upload_id: str
    offset: int
    length: int | None
    expires_at: datetime | None
    complete: bool
    interrupted: BodyInterrupted | None = None


def _store_failed(exc: StoreError, upload_id: str, *, writing: bool = False) -> StorageUnavailable:
    # The store's message may name hosts and buckets: it goes to the log, not the client.
    log.warning("object store failed", upload_id=upload_id, error=str(exc))
    if writing:
        return StorageUnavailable("the object store failed while writing; resume from a HEAD")
    return StorageUnavailable("the object store is unavailable; try again shortly")


def _metadata(row: Upload) -> UploadMetadata:
    return UploadMetadata(filename=row.filename, title=row.title, description=row.description)


def _chunk_event(
    row: Upload,
    state: DurableState,
    result: WriteResult,
    checksum: str,
    now: datetime,
    *,
    complete: bool,
) -> ChunkUploaded:
    return ChunkUploaded(
        upload_id=row.id,
        offset=result.start,
        length=result.written,
        part_number=result.last_part or (state.next_part - 1),
        checksum=checksum,
        complete=complete,
        event_id=completion_event_id(row.id) if complete else new_event_id(),
        occurred_at=now,
    )


class _Stages:
    """Where a PATCH's time went (ms per stage), for its debug log line."""

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self.ms: dict[str, float] = {}

    def mark(self, stage: str) -> None:
        now = time.perf_counter()
        self.ms[f"{stage}_ms"] = round((now - self._last) * 1000, 2)
        self._last = now


class UploadEngine:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        store: ObjectStore,
        publisher: EventPublisher,
    ) -> None:
        self.settings = settings
        self._sessions = sessions
        self._store = store
        self._publisher = publisher
        self._settling = Settling()

    @property
    def max_size(self) -> int:
        return self.settings.tus_max_size

    @property
    def chunk_size(self) -> int:
        return self.settings.tus_chunk_size

    def location(self, upload_id: str) -> str:
        return f"{self.settings.public_url.rstrip('/')}/files/{upload_id}"

    # -- reading ----------------------------------------------------------------------

    async def _row(self, user_id: str, upload_id: str) -> Upload:
        async with self._sessions() as session:
            row = await session.get(Upload, upload_id)
        # Another user's upload is indistinguishable from none (no id probing).
        if row is None or row.user_id != user_id or row.state == EngineState.TERMINATED:
            raise UploadNotFound("no such upload")
        return row

    def _check_not_expired(self, row: Upload) -> None:
        if row.state == EngineState.OPEN and row.expires_at <= _now():
            raise UploadGone("this upload expired; start a new one")

    async def _durable(self, row: Upload) -> DurableState:
        multipart = self._multipart(row)
        try:
            return await load_state(self._store, row.id, multipart)
        except StoreUploadNotFound:
            # The uploader's sweeper removed it (expired) a moment ago.
            raise UploadGone("this upload expired; start a new one") from None
        except StoreError as exc:
            raise _store_failed(exc, row.id) from exc

    @staticmethod
    def _multipart(row: Upload) -> MultipartUpload | None:
        if not row.multipart_id:
            return None
        return MultipartUpload(upload_id=row.multipart_id, key=row.object_key)

    async def info(self, user_id: str, upload_id: str) -> UploadInfo:
        """tus HEAD: the durable offset, from the store, never from a counter."""
        row = await self._row(user_id, upload_id)
        if row.state == EngineState.COMPLETE:
            return self._info(row, row.length or 0)
        self._check_not_expired(row)
        state = await self._durable(row)
        if row.length is not None and state.offset == row.length:
            row = await self._complete(row, state, start=state.offset, written=0, checksum="")
        return self._info(row, state.offset)

    def _info(self, row: Upload, offset: int) -> UploadInfo:
        complete = row.state == EngineState.COMPLETE
        return UploadInfo(
            upload_id=row.id,
            offset=offset,
            length=row.length,
            metadata=_metadata(row),
            expires_at=None if complete else row.expires_at,
            complete=complete,
        )

    # -- creation ---------------------------------------------------------------------

    async def create(self, user_id: str, request: CreateRequest) -> Upload:
        """tus creation: an open upload, its multipart upload, and ``upload.created``."""
        if request.length is not None and request.length > self.max_size:
            raise TooLarge(f"the upload is larger than the {self.max_size}-byte maximum")
        upload_id = new_upload_id()
        key = source_key(upload_id)
        multipart_id = ""
        if request.length != 0:
            try:
                multipart_id = (await self._store.create_multipart(key)).upload_id
            except StoreError as exc:
                raise _store_failed(exc, upload_id) from exc
        now = _now()
        row = Upload(
            id=upload_id,
            user_id=user_id,
            object_key=key,
            multipart_id=multipart_id,
            length=request.length,
            filename=request.metadata.filename,
            title=request.metadata.title,
            description=request.metadata.description,
            state=EngineState.OPEN.value,
            created_at=now,
            updated_at=now,
            expires_at=now + timedelta(seconds=self.settings.tus_expiry_s),
        )
        async with self._sessions.begin() as session:
            session.add(row)
        created = UploadCreated(
            upload_id=upload_id,
            user_id=user_id,
            size=-1 if request.length is None else request.length,
            filename=row.filename,
            title=row.title,
            description=row.description,
            expires_at=row.expires_at,
            occurred_at=now,
        )
        try:
            await self._publisher.publish(created)
        except PublishError as exc:
            # Nobody else knows this upload: undo it rather than leave an orphan.
            await self._discard(row)
            raise StorageUnavailable("the event bus is unavailable; try again shortly") from exc
        log.info("upload created", upload_id=upload_id, user_id=user_id, length=request.length)
        if request.length == 0:
            row = await self._complete(row, DurableState((), 0), start=0, written=0, checksum="")
        return row

    async def _discard(self, row: Upload) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(Upload)
                .where(Upload.id == row.id)
                .values(state=EngineState.TERMINATED.value, updated_at=_now())
            )
        await self._remove_bytes(row)

    async def _remove_bytes(self, row: Upload) -> None:
        multipart = self._multipart(row)
        try:
            if multipart is not None:
                await self._store.abort_multipart(multipart)
            await self._store.delete_prefix(upload_prefix(row.id))
        except StoreError as exc:
            # The uploader's expiry sweep removes what is left.
            log.warning("could not remove an upload's bytes", upload_id=row.id, error=str(exc))

    # -- appending --------------------------------------------------------------------

    async def append(
        self,
        user_id: str,
        upload_id: str,
        request: PatchRequest,
        receive: Receive,
        socket: SocketBody | None = None,
    ) -> AppendResult:
        """tus PATCH: append the body at ``request.offset`` under the upload's lock.

        The first PATCH takes the lock (one commit that returns the row); each chunk but
        the last is answered once its bytes are durable and hands the lock to the next
        PATCH (settling.py); the last publishes its event and releases the lock (one
        commit) before its answer.

        Where the server offers the ``socket``, a big body is read from it on a thread.
        Without a checksum the store's worker thread reads it into its own buffers
        (ThreadBodyReader), claimed once the PATCH is accepted. A checksummed body is
        spooled and hashed on the loop: it is claimed first, with read-ahead, so that
        a thread reads the client's bytes while the lock and the state are made ready;
        such a request refused before its body is read closes its connection.
        """
        claim = _BodyClaim(socket, self.settings.tus_read_timeout_s)
        if request.checksum is not None:
            claim.take(read_ahead=True)
        try:
            return await self._append(user_id, upload_id, request, receive, claim)
        finally:
            claim.release()  # before the answer: the connection's next request

    async def _append(
        self,
        user_id: str,
        upload_id: str,
        request: PatchRequest,
        receive: Receive,
        claim: _BodyClaim,
    ) -> AppendResult:
        lease_s = self.settings.tus_lock_lease_s
        stages = _Stages()
        parked = self._settling.adopt(upload_id, user_id)
        async with contextlib.AsyncExitStack() as stack:
            if parked is not None:
                # The lease of this upload's previous PATCH here, handed over as it is.
                lease = parked.lease
                await stack.enter_async_context(parked.exits)
                row, known = parked.row, parked.state
            else:
                known = None
                await self._settling.settled(upload_id)
                acquired = await self._acquire(upload_id, user_id, lease_s)
                if acquired is None:
                    return await self._not_acquired(user_id, upload_id, request)
                row = acquired
                assert row.lock_token is not None
                lease = await stack.enter_async_context(
                    LeaseKeeper(self._sessions, upload_id, row.lock_token, lease_s)
                )
            stages.mark("acquire")
            self._check_length_change(row, request)
            state = known if known is not None else await self._durable(row)
            stages.mark("state")
            if request.offset != state.offset:
                # core §PATCH: "If the offsets do not match, the Server MUST respond with
                # 409 Conflict without modifying the upload resource."
                raise OffsetMismatch(
                    f"Upload-Offset is {request.offset} but the upload is at {state.offset}",
                    offset=state.offset,
                )
            if request.length is not None and row.length is None:
                row = await self._declare_length(row, request.length, state.offset)
            bound = row.length if row.length is not None else self.max_size
            body: AsyncIterator[bytes] | ThreadBodyReader
            direct = claim.take(read_ahead=request.checksum is not None)
            if direct is not None and not direct.read_ahead:
                body = ThreadBodyReader(direct, limit=bound - state.offset)
            else:
                body = read_body(
                    receive,
                    limit=bound - state.offset,
                    timeout_s=self.settings.tus_read_timeout_s,
                    direct=direct,
                )
            result = await self._write(row, state, body, request, lease.check)
            stages.mark("write")
            complete = row.length is not None and result.offset == row.length
            checksum = request.checksum.label() if request.checksum else ""
            if result.written and not complete:
                # The lease and its exit go to the settling, which outlives this call.
                answer = self._settle_later(
                    row,
                    state,
                    result,
                    Parked(row, result.state_after(state), lease, stack.pop_all()),
                    checksum,
                )
            else:
                answer = await self._finish(
                    row, state, result, lease, checksum, complete=complete, stages=stages
                )
            log.debug(
                "tus patch",
                upload_id=upload_id,
                bytes=result.written,
                handed_over=parked is not None,
                **stages.ms,
            )
            return answer
        raise AssertionError("unreachable")  # mypy: the exit stack swallows nothing

    async def _acquire(self, upload_id: str, user_id: str, lease_s: float) -> Upload | None:
        """The lock, waiting up to ``LOCK_WAIT_S`` while another request holds it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LOCK_WAIT_S
        while True:
            row = await acquire(self._sessions, upload_id, user_id, lease_s)
            if row is not None:
                return row
            if not await self._held(user_id, upload_id):
                # Freed since, or refused for another reason (_not_acquired says which).
                return await acquire(self._sessions, upload_id, user_id, lease_s)
            if loop.time() >= deadline:
                return None
            await asyncio.sleep(LOCK_POLL_S)

    async def _held(self, user_id: str, upload_id: str) -> bool:
        async with self._sessions() as session:
            row = await session.get(Upload, upload_id)
        return (
            row is not None
            and row.user_id == user_id
            and row.state == EngineState.OPEN
            and row.expires_at > _now()
            and row.lock_until is not None
            and row.lock_until > _now()
        )

    # -- settling after the answer -------------------------------------------------------

    def _settle_later(
        self,
        row: Upload,
        state: DurableState,
        result: WriteResult,
        parked: Parked,
        checksum: str,
    ) -> AppendResult:
        """The answer now; the chunk's event and the lock's fate after it (settling.py)."""
        now = _now()
        expires = now + timedelta(seconds=self.settings.tus_expiry_s)
        event = _chunk_event(row, state, result, checksum, now, complete=False)

        async def publish() -> None:
            try:
                await self._publisher.publish(event)
            except PublishError as exc:
                # Progress only: the next chunk's event, or the completion, says more.
                log.warning("chunk.uploaded not published", upload_id=row.id, error=str(exc))
                return
            # The expiry slides only with a published event (the uploader counts from
            # it), with the lease's next write, whoever holds the lease by then.
            parked.lease.carry(expires_at=expires, updated_at=_now())

        self._settling.start(row.id, parked, publish)
        return AppendResult(
            upload_id=row.id,
            offset=result.offset,
            length=row.length,
            expires_at=expires,
            complete=False,
            interrupted=result.interrupted,
        )

    async def drain(self) -> None:
        """Until every answered PATCH has settled (shutdown)."""
        await self._settling.drain()

    async def _not_acquired(
        self, user_id: str, upload_id: str, request: PatchRequest
    ) -> AppendResult:
        """Why the lock was refused, as the answer the client gets."""
        row = await self._row(user_id, upload_id)  # 404: gone or not this user's
        self._check_length_change(row, request)
        if row.state == EngineState.COMPLETE:
            return self._append_to_complete(row, request)
        raise await self._why_not_acquired(user_id, upload_id)

    def _check_length_change(self, row: Upload, request: PatchRequest) -> None:
        if request.length is not None and row.length is not None and request.length != row.length:
            # creation-defer-length: once known, Upload-Length "MUST NOT" change.
            raise BadRequest(f"Upload-Length is {row.length} and cannot change")

    def _append_to_complete(self, row: Upload, request: PatchRequest) -> AppendResult:
        length = row.length or 0
        if request.offset != length:
            raise OffsetMismatch(
                f"Upload-Offset is {request.offset} but the upload is complete at {length}",
                offset=length,
            )
        return AppendResult(row.id, length, row.length, None, complete=True)

    async def _why_not_acquired(self, user_id: str, upload_id: str) -> Exception:
        row = await self._row(user_id, upload_id)
        if row.state == EngineState.COMPLETE:
            return UploadComplete("the upload is complete")
        self._check_not_expired(row)
        retry = 1
        if row.lock_until is not None:
            retry = max(1, int((row.lock_until - _now()).total_seconds()) + 1)
        return UploadLocked(
            "another request is writing to this upload; retry when it has finished",
            headers={"Retry-After": str(retry)},
        )

    async def _declare_length(self, row: Upload, length: int, offset: int) -> Upload:
        if length < offset:
            raise BadRequest(f"Upload-Length {length} is below the {offset} bytes already stored")
        async with self._sessions.begin() as session:
            await session.execute(
                update(Upload)
                .where(Upload.id == row.id, Upload.length.is_(None))
                .values(length=length, updated_at=_now())
            )
        return await self._row(row.user_id, row.id)

    async def _write(
        self,
        row: Upload,
        state: DurableState,
        body: AsyncIterator[bytes] | ThreadBodyReader,
        request: PatchRequest,
        guard: Callable[[], None],
    ) -> WriteResult:
        multipart = self._multipart(row)
        if multipart is None:  # an empty upload is complete at creation
            raise OffsetMismatch("the upload is complete", offset=0)
        part_size, min_part = part_sizes(
            self.chunk_size, row.length if row.length is not None else self.max_size
        )
        writer = ChunkWriter(
            self._store,
            row.id,
            multipart,
            state,
            part_size=part_size,
            min_part=min_part,
            final_length=row.length,
            guard=guard,
        )
        try:
            if request.checksum is None:
                return await writer.write(body)
            # Checksummed: claimed with read-ahead (append), so an async body.
            assert not isinstance(body, ThreadBodyReader)
            async with Spool(memory_limit=self.chunk_size) as spool:
                try:
                    await spool.fill(body, request.checksum)
                except BodyInterrupted as interrupted:
                    # Nothing of a checksummed chunk is kept unless all of it came.
                    return WriteResult(state.offset, state.offset, 0, interrupted)
                return await writer.write(spool.chunks())
        except StoreError as exc:
            raise _store_failed(exc, row.id, writing=True) from exc

    async def _finish(
        self,
        row: Upload,
        state: DurableState,
        result: WriteResult,
        lease: LeaseKeeper,
        checksum: str,
        *,
        complete: bool,
        stages: _Stages,
    ) -> AppendResult:
        """The last chunk, or a PATCH that stored nothing: the event (if complete) and
        the release come before the answer."""
        now = _now()
        changes: dict[str, object] = {"updated_at": now}
        if complete:
            await self._publish_chunk(
                _chunk_event(row, state, result, checksum, now, complete=True), result.offset
            )
            stages.mark("publish")
            # Only after the event: the uploader computes the same expiry from its time.
            changes["expires_at"] = now + timedelta(seconds=self.settings.tus_expiry_s)
            changes["state"] = EngineState.COMPLETE.value
            log.info("upload complete", upload_id=row.id, length=row.length)
        await lease.release(**changes)
        stages.mark("release")
        return AppendResult(
            upload_id=row.id,
            offset=result.offset,
            length=row.length,
            expires_at=None if complete else row.expires_at,
            complete=complete,
            interrupted=result.interrupted,
        )

    async def _publish_chunk(self, event: ChunkUploaded, offset: int) -> None:
        try:
            await self._publisher.publish(event)
        except PublishError as exc:
            raise StorageUnavailable(
                f"the bytes up to {offset} are stored, but the event bus did not answer; "
                "resume from a HEAD",
                headers={"Upload-Offset": str(offset)},
            ) from exc

    async def _complete(
        self,
        row: Upload,
        state: DurableState,
        *,
        start: int,
        written: int,
        checksum: str,
    ) -> Upload:
        """Announce that every byte is durable (the HEAD/``complete`` repair path: the
        PATCH that wrote the last byte announces it itself, in ``_finish``)."""
        length = row.length or 0
        now = _now()
        await self._publish_chunk(
            ChunkUploaded(
                upload_id=row.id,
                offset=start,
                length=written,
                part_number=state.next_part - 1,
                checksum=checksum,
                complete=True,
                event_id=completion_event_id(row.id),
                occurred_at=now,
            ),
            length,
        )
        async with self._sessions.begin() as session:
            await session.execute(
                update(Upload)
                .where(Upload.id == row.id, Upload.state == EngineState.OPEN.value)
                .values(state=EngineState.COMPLETE.value, updated_at=now)
            )
        log.info("upload complete", upload_id=row.id, length=length)
        return await self._row(row.user_id, row.id)

    async def ensure_completion(self, user_id: str, upload_id: str) -> UploadInfo:
        """Simple API ``complete``: every byte must be there; (re)announces completion."""
        info = await self.info(user_id, upload_id)
        if not info.complete:
            raise OffsetMismatch(
                f"the upload has {info.offset} of {info.length} bytes; send the rest first",
                offset=info.offset,
            )
        return info

    # -- termination ------------------------------------------------------------------

    async def terminate(self, user_id: str, upload_id: str) -> None:
        """termination §DELETE: free the bytes; the upload answers 404 from now on."""
        await self._settling.settled(upload_id)
        row = await self._row(user_id, upload_id)
        if row.state == EngineState.COMPLETE:
            raise UploadComplete(
                "the upload is complete and being processed; delete the video instead"
            )
        locked = await acquire(self._sessions, upload_id, user_id, self.settings.tus_lock_lease_s)
        if locked is None:
            if row.expires_at <= _now():
                # Expired uploads are the sweeper's; for the client it is gone already.
                await self._terminate_row(row)
                return
            raise await self._why_not_acquired(user_id, upload_id)
        await self._terminate_row(row)

    async def _terminate_row(self, row: Upload) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(Upload)
                .where(Upload.id == row.id)
                .values(
                    state=EngineState.TERMINATED.value,
                    updated_at=_now(),
                    lock_token=None,
                    lock_until=None,
                )
            )
        offset = await self.offset_held(row)
        await self._remove_bytes(row)
        try:
            await self._publisher.publish(
                UploadRejected(
                    upload_id=row.id,
                    user_id=row.user_id,
                    code=CANCELLED_CODE,
                    reason="the upload was cancelled",
                    offset=offset,
                )
            )
        except PublishError as exc:
            log.warning(
                "upload.rejected (cancelled) not published", upload_id=row.id, error=str(exc)
            )
        log.info("upload terminated", upload_id=row.id)

    async def offset_held(self, row: Upload) -> int:
        """The bytes a cancelled or expired upload holds until they are removed: only
        what its status shows, so 0 rather than a failure when the store cannot say."""
        try:
            return (await self._durable(row)).offset
        except (UploadGone, StorageUnavailable):
            return 0

    async def owned(self, user_id: str, upload_id: str) -> Upload:
        """The row, for callers that only need ownership (status API)."""
        return await self._row(user_id, upload_id)


class _BodyClaim:
    """The request's socket body (when offered), claimed at most once, at the moment
    the engine wants it, and released at the end of the request."""

    def __init__(self, socket: SocketBody | None, timeout_s: float) -> None:
        self._socket = socket
        self._timeout_s = timeout_s
        self._direct: DirectBody | None = None

    def take(self, *, read_ahead: bool) -> DirectBody | None:
        if self._direct is None and self._socket is not None:
            self._direct = self._socket.claim(self._timeout_s, read_ahead=read_ahead)
            self._socket = None  # one claim, taken or refused
        return self._direct

    def release(self) -> None:
        if self._direct is not None:
            self._direct.release()
