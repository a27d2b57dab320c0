"""Job handling: from one delivered request to one ``video.published``.

For each delivery the worker

1. claims the video's job row (:mod:`transcoder.jobs`): run it, publish a stored
   result, or skip a duplicate;
2. runs the job in a child process (:mod:`transcoder.supervise`) while it heartbeats:
   ``in_progress`` to JetStream (so a long job is not redelivered while it runs) and the
   lease in the job row, every third of the ack wait; and publishes
   ``transcode.progress`` about every 2 s;
3. stores the result, then in one transaction with the processed-event claim
   (:func:`events.consumer.run_once`) marks the job published and publishes
   ``transcode.completed`` and ``video.published`` with their stored event ids.

Failures: a poison source → ``transcode.failed`` (permanent) and
:class:`~events.errors.PermanentError` (the ack policy dead-letters it at once). A
transient one → ``transcode.failed`` (``permanent`` only on the last delivery) and the
error is re-raised, so the ack policy naks it with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Protocol

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from common.db import create_engine, session_factory
from common.logs import get_logger
from common.settings import Settings
from common.store import ObjectStore, create_store
from events.catalog import (
    StreamRecorded,
    TranscodeCompleted,
    TranscodeFailed,
    TranscodeProgress,
    TranscodeRequested,
    VideoPublished,
)
from events.consumer import RetryPolicy, run_once
from events.envelope import Event
from events.errors import PermanentError
from events.publisher import EventPublisher, PublishError
from transcoder import jobs
from transcoder.deletion import media_of_request, purge
from transcoder.errors import PoisonInputError, TransientJobError
from transcoder.jobs import ClaimOutcome
from transcoder.layout import check_video_id
from transcoder.protocol import JobSpec, Progress, Result
from transcoder.supervise import ChildProcess, run_child

__all__ = ["CONSUMER", "Delivery", "JobRequest", "TranscodeWorker", "retry_policy"]

log = get_logger(__name__)

CONSUMER: Final = "transcoder"
RECORDINGS_CONSUMER: Final = "transcoder-recordings"
PROGRESS_INTERVAL_S: Final = 2.0
# How long stop() lets in-flight steps (claim, publish) finish before cancelling them.
STOP_GRACE_S: Final = 10.0
PROGRESS_DRAIN_S: Final = 2.0


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        max_deliver=settings.transcode_max_deliver,
        backoff_s=settings.transcode_retry_backoff_s or (10.0,),
        ack_wait_s=settings.transcode_ack_wait_s,
    )


class Delivery(Protocol):
    """What the worker needs of a JetStream delivery (FastStream's NatsMessage has it)."""

    async def in_progress(self) -> None: ...
    async def nack(self, delay: float | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class JobRequest:
    """One shape for ``transcode.requested`` and ``stream.recorded``."""

    event: Event  # the delivered event: its id is the processed-event key
    video_id: str
    user_id: str
    source_key: str
    origin: str
    title: str
    description: str
    duration_s: float
    stream_id: str = ""
    session_id: str = ""

    @classmethod
    def from_requested(cls, event: TranscodeRequested) -> JobRequest:
        return cls(
            event=event,
            video_id=event.video_id,
            user_id=event.user_id,
            source_key=event.source_key,
            origin=event.origin,
            title=event.title,
            description=event.description,
            duration_s=event.duration_s,
        )

    @classmethod
    def from_recorded(cls, event: StreamRecorded) -> JobRequest:
        # The recording already plays: ingest wrote ``vod/{video_id}/master.m3u8`` over
        # its live segments and published the video. This job's master overwrites that
        # one, and its ``video.published`` (same video id) updates the same video.
        return cls(
            event=event,
            video_id=event.video_id,
            user_id=event.user_id,
            source_key=event.object_key,
            origin="recording",
            title=event.title,
            description=event.description,
            duration_s=event.duration_s,
            stream_id=event.stream_id,
            session_id=event.session_id,
        )


@dataclass
class _Heartbeat:
    """Keeps a running job's delivery and lease alive."""

    worker: TranscodeWorker
    request: JobRequest
    delivery: Delivery
    owner: str

    async def run(self) -> None:
        settings = self.worker.settings
        interval = max(0.5, settings.transcode_ack_wait_s / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.delivery.in_progress()
                await jobs.renew_lease(
                    self.worker.sessions,
                    video_id=self.request.video_id,
                    owner=self.owner,
                    lease_s=settings.transcode_ack_wait_s,
                )
            except Exception as exc:  # a missed beat is retried on the next one
                log.warning("heartbeat failed", video_id=self.request.video_id, error=repr(exc))


@dataclass
class _ProgressPublisher:
    """``transcode.progress`` about every 2 s, and at each new stage.

    Progress is advisory: it is published off the child's read loop, one at a time;
    a beat that finds the previous one still in flight (NATS slow) is dropped rather
    than queued, and a failed publish never fails the job.
    """

    worker: TranscodeWorker
    request: JobRequest
    last_sent: float = float("-inf")
    last_stage: str = ""
    _inflight: asyncio.Task[None] | None = None

    async def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        new_stage = progress.stage != self.last_stage
        if not new_stage and now - self.last_sent < PROGRESS_INTERVAL_S:
            return
        if self._inflight is not None and not self._inflight.done():
            return
        self.last_sent, self.last_stage = now, progress.stage
        self._inflight = asyncio.create_task(self._publish(self._event(progress)))

    def _event(self, progress: Progress) -> TranscodeProgress:
        duration = progress.duration_s or self.request.duration_s
        percent = min(99.9, 100 * progress.position_s / duration) if duration > 0 else 0.0
        speed = progress.position_s / progress.elapsed_s if progress.elapsed_s > 0 else 0.0
        eta = (duration - progress.position_s) / speed if speed > 0 and duration > 0 else 0.0
        return TranscodeProgress(
            video_id=self.request.video_id,
            percent=round(percent, 1),
            stage=progress.stage,
            speed=round(speed, 2),
            eta_s=round(max(0.0, eta), 1),
        )

    async def _publish(self, event: TranscodeProgress) -> None:
        try:
            await self.worker.publisher.publish(event, correlation_id=self.request.event.event_id)
        except PublishError as exc:
            log.warning("progress not published", video_id=self.request.video_id, error=str(exc))

    async def drain(self) -> None:
        """Let the last progress event go out before the job's outcome is published."""
        if self._inflight is not None:
            with contextlib.suppress(Exception, TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._inflight), PROGRESS_DRAIN_S)


class TranscodeWorker:
    """The transcoder's state in one process: database, publisher, running children."""

    def __init__(self, settings: Settings, *, engine: AsyncEngine | None = None) -> None:
        self.settings = settings
        self.policy = retry_policy(settings)
        self._engine = engine
        self._own_engine = engine is None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._publisher: EventPublisher | None = None
        self._store: ObjectStore | None = None
        self.children: dict[str, ChildProcess] = {}  # video_id → running child
        self._handlers: set[asyncio.Task[object]] = set()  # every delivery in hand
        self._encoding: set[asyncio.Task[object]] = set()  # those waiting on a child
        self._stopping = False
        # Kill this process's transcode of a video deleted meanwhile (tests turn it off
        # to see the job end after the delete, as it does on another replica).
        self.stop_deleted_jobs = True

    # -- lifecycle -------------------------------------------------------------------

    def bind(self, publisher: EventPublisher) -> None:
        self._publisher = publisher

    async def start(self) -> None:
        if self._engine is None:
            self._engine = create_engine(
                self.settings.resolved_database_url, application_name="videopick-transcoder"
            )
        self._sessions = session_factory(self._engine)
        # The children write into it; this process deletes from it (transcoder.deletion).
        self._store = create_store(self.settings)
        await self._store.ensure_ready()

    async def stop(self) -> None:
        """Kill running children (their handlers nak the deliveries: another replica
        starts them at once); let short steps in progress, like a publish, finish."""
        self._stopping = True
        for task in list(self._encoding):
            task.cancel()
        if self._handlers:
            _, pending = await asyncio.wait(list(self._handlers), timeout=STOP_GRACE_S)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=STOP_GRACE_S)
        if self._store is not None:
            await self._store.close()
        if self._own_engine and self._engine is not None:
            await self._engine.dispose()

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        if self._sessions is None:
            raise RuntimeError("TranscodeWorker.start() was not awaited")
        return self._sessions

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            raise RuntimeError("TranscodeWorker.start() was not awaited")
        return self._store

    @property
    def publisher(self) -> EventPublisher:
        if self._publisher is None:
            raise RuntimeError("TranscodeWorker.bind() was not called")
        return self._publisher

    # -- one delivery ----------------------------------------------------------------

    async def handle(self, request: JobRequest, delivery: Delivery, *, attempt: int) -> None:
        """Process one delivery; returning means "ack", raising steers the ack policy.

        ``attempt`` is the delivery count (1 for the first delivery).
        """
        try:
            check_video_id(request.video_id)
        except ValueError as exc:
            raise PermanentError(str(exc)) from exc
        if self._stopping:  # fetched while shutting down: give it straight back
            await delivery.nack(delay=0)
            return
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            await self._handle(request, delivery, attempt=attempt)
        except asyncio.CancelledError:
            # Shutting down mid-job: the child is already killed; hand the job back
            # now rather than after the ack wait, so another replica starts it at once.
            with contextlib.suppress(Exception):
                await asyncio.shield(delivery.nack(delay=0))
            raise
        finally:
            if task is not None:
                self._handlers.discard(task)

    async def _handle(self, request: JobRequest, delivery: Delivery, *, attempt: int) -> None:
        owner = uuid.uuid4().hex
        claim = await jobs.claim_job(
            self.sessions,
            video_id=request.video_id,
            request_event_id=request.event.event_id,
            owner=owner,
            lease_s=self.settings.transcode_ack_wait_s,
            redelivery=attempt > 1,
            source_key=request.source_key,
        )
        log.info(
            "job claimed",
            video_id=request.video_id,
            outcome=claim.outcome.value,
            delivery=attempt,
            attempts=claim.attempts,
        )
        if claim.outcome in (ClaimOutcome.DONE, ClaimOutcome.BUSY):
            return
        if claim.outcome is ClaimOutcome.DELETED:  # requested after the video was deleted
            await self._remove(request)
            return
        if claim.outcome is ClaimOutcome.RUN:
            try:
                result = await self._run(request, delivery, owner=owner, attempt=attempt)
            except Exception:
                if not await self._deleted(request.video_id):
                    raise
                # Deleted under it (its source may be gone already): not a failure.
                await self._remove(request)
                return
            await jobs.store_result(
                self.sessions,
                video_id=request.video_id,
                result_json=msgspec.json.encode(result).decode(),
            )
        await self._publish(request)

    async def _run(
        self, request: JobRequest, delivery: Delivery, *, owner: str, attempt: int
    ) -> Result:
        spec = JobSpec(
            video_id=request.video_id,
            source_key=request.source_key,
            duration_hint_s=request.duration_s,
            settings=self.settings,
        )
        heartbeat = asyncio.create_task(
            _Heartbeat(self, request, delivery, owner).run(), name="transcode-heartbeat"
        )
        started = time.monotonic()
        task = asyncio.current_task()
        if task is not None:
            self._encoding.add(task)
        progress = _ProgressPublisher(self, request)
        try:
            try:
                result = await run_child(
                    spec,
                    on_progress=progress,
                    stall_timeout_s=self.settings.transcode_stall_timeout_s,
                    on_start=lambda child: self.children.__setitem__(request.video_id, child),
                )
            finally:
                heartbeat.cancel()
                self.children.pop(request.video_id, None)
                if task is not None:
                    self._encoding.discard(task)
                await progress.drain()  # progress first, then the outcome
        except PoisonInputError as exc:
            await self._fail(request, owner, str(exc), attempt=attempt, permanent=True)
            raise PermanentError(f"poison input: {exc}") from exc
        except TransientJobError as exc:
            last = attempt >= self.policy.max_deliver
            await self._fail(request, owner, str(exc), attempt=attempt, permanent=last)
            raise
        log.info(
            "job done",
            video_id=request.video_id,
            seconds=round(time.monotonic() - started, 2),
            renditions=",".join(r.name for r in result.renditions),
        )
        return result

    async def _fail(
        self, request: JobRequest, owner: str, reason: str, *, attempt: int, permanent: bool
    ) -> None:
        if await self._deleted(request.video_id):
            return  # no transcode.failed for a deleted video (see _handle)
        log.warning("job failed", video_id=request.video_id, reason=reason, permanent=permanent)
        await jobs.record_failure(
            self.sessions,
            video_id=request.video_id,
            owner=owner,
            reason=reason,
            permanent=permanent,
        )
        await self.publisher.publish(
            TranscodeFailed(
                video_id=request.video_id,
                user_id=request.user_id,
                reason=reason[:1000],
                attempt=attempt,
                permanent=permanent,
            ),
            correlation_id=request.event.event_id,
        )

    async def _publish(self, request: JobRequest) -> None:
        row = await jobs.load(self.sessions, request.video_id)
        if row is not None and row.status == jobs.JobStatus.DELETED:
            # Deleted while it ran: publish nothing, and remove what it wrote (the
            # deletion may have swept the prefix before the last objects landed).
            await self._remove(request)
            return
        if row is None or row.result is None:
            raise RuntimeError(f"job {request.video_id} has no stored result to publish")
        result = msgspec.json.decode(row.result, type=Result)
        completed_id, published_id = row.completed_event_id, row.published_event_id
        assert completed_id
        assert published_id

        async def effect(session: AsyncSession) -> None:
            if not await jobs.mark_published(session, request.video_id):
                return  # another delivery published it
            correlation = request.event.event_id
            await self.publisher.publish(
                _completed(request, result, completed_id), correlation_id=correlation
            )
            await self.publisher.publish(
                _published(request, result, published_id), correlation_id=correlation
            )

        if await run_once(self.sessions, CONSUMER, request.event, effect):
            log.info("video published", video_id=request.video_id)

    async def stop_job(self, video_id: str) -> None:
        """End this process's running transcode of ``video_id`` (its video was deleted)."""
        child = self.children.get(video_id)
        if child is not None and self.stop_deleted_jobs:
            log.info("stopping the transcode of a deleted video", video_id=video_id)
            await child.kill()

    async def _deleted(self, video_id: str) -> bool:
        row = await jobs.load(self.sessions, video_id)
        return row is not None and row.status == jobs.JobStatus.DELETED

    async def _remove(self, request: JobRequest) -> None:
        media = media_of_request(
            request.video_id,
            request.source_key,
            stream_id=request.stream_id,
            session_id=request.session_id,
        )
        removed = await purge(self.store, media)
        log.info("deleted video's media removed", video_id=request.video_id, objects=removed)


def _completed(request: JobRequest, result: Result, event_id: str) -> TranscodeCompleted:
    return TranscodeCompleted(
        event_id=event_id,
        video_id=request.video_id,
        user_id=request.user_id,
        master_key=result.master_key,
        renditions=result.renditions,
        poster_key=result.poster_key,
        thumbnail_keys=result.thumbnail_keys,
        sprite_key=result.sprite_key,
        sprite_vtt_key=result.sprite_vtt_key,
        duration_s=result.duration_s,
    )


def _published(request: JobRequest, result: Result, event_id: str) -> VideoPublished:
    return VideoPublished(
        event_id=event_id,
        video_id=request.video_id,
        user_id=request.user_id,
        title=request.title,
        description=request.description,
        duration_s=result.duration_s,
        master_key=result.master_key,
        poster_key=result.poster_key,
        width=result.width,
        height=result.height,
        origin=request.origin,
        stream_id=request.stream_id,
    )


JobHandler = Callable[[JobRequest, Delivery], Awaitable[None]]
