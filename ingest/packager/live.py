"""The ingest process's live packaging: a sink per connection, broadcasts across them.

:class:`LivePackaging` hands the RTMP server a :class:`~ingest.packager.session.SessionSink`
per publish and decides, when a connection closes, what becomes of its broadcast
(:mod:`ingest.packager.broadcast`):

- closed for good (unpublish, stop request, error, shutdown, or no reconnect window):
  ``stream.ended`` now, then the recording (``stream.recorded``, with the title and
  description the channel had when it ended), which is a video at once:
  ``vod/{video_id}/master.m3u8`` names the broadcast's ``recording.m3u8`` (its live
  segments, no copy) and ``video.published`` follows ``stream.recorded``. A transcode of
  the recording later overwrites that master with its ladder's and publishes the same
  video again;
- dropped (no unpublish) or timed out: the broadcast lingers ``reconnect_window_s``;
  a publish of the same channel meanwhile continues it (same session id, media
  sequence and decode times carrying on, EXT-X-DISCONTINUITY), otherwise it ends then.

Reconnects are continued by the ingest process that held the broadcast (the one the
publisher's DNS name or load balancer sends it back to); a process that dies takes its
lingering broadcasts with it.

Part objects leave the store once no playlist lists them (:mod:`.retention`), and
the rest of them a few target durations after the broadcast ends; segments stay.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from common.logs import get_logger
from common.store import ObjectNotFound, ObjectStore, StoreError
from events.catalog import StreamEnded, StreamRecorded, VideoPublished
from ingest.packager import keys
from ingest.packager.broadcast import RESUMABLE, Broadcast, ended_reason
from ingest.packager.packager import Finished, PackagerConfig
from ingest.packager.recording import (
    Variant,
    build_recording,
    master_key,
    master_uri_of,
    poster_key,
    published_event_id,
    recording_master,
    recording_video_id,
    vod_playlist,
)
from ingest.packager.retention import PartRetention
from ingest.packager.session import PartObserver, Publisher, SessionSink
from ingest.packager.thumbnail import ThumbnailRenderer

log = get_logger(__name__)

# (title, description) of a channel's broadcast, for its recording.
Describe = Callable[[str], Awaitable[tuple[str, str]]]


class LivePackaging:
    """Builds a :class:`SessionSink` per publish; hand ``create_session_sink`` to the server.

    ``publisher`` publishes lifecycle and segment events; ``part_publisher`` (default:
    the same) publishes ``stream.part`` and ``stream.thumbnail`` — give it fewer
    retries, a late part is worth nothing. ``describe`` looks up the title and
    description a recording is published with.
    """

    def __init__(
        self,
        store: ObjectStore,
        publisher: Publisher,
        *,
        config: PackagerConfig | None = None,
        part_publisher: Publisher | None = None,
        record: bool = True,
        on_part: PartObserver | None = None,
        reconnect_window_s: float = 0.0,
        thumbnail_interval_s: float = 0.0,
        describe: Describe | None = None,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.part_publisher = part_publisher or publisher
        self.config = config or PackagerConfig()
        self.record = record
        self.on_part = on_part
        self.reconnect_window_s = reconnect_window_s
        self.thumbnail_interval_s = thumbnail_interval_s
        self.describe = describe
        self.thumbnails = ThumbnailRenderer()
        self._sessions: dict[str, SessionSink] = {}
        # The newest broadcast of each channel seen here (one entry per channel).
        self._broadcasts: dict[str, Broadcast] = {}
        self._part_sweeps: dict[Broadcast, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def sessions(self) -> dict[str, SessionSink]:
        """Connections still packaging or publishing, by session id."""
        return dict(self._sessions)

    def broadcast(self, stream_id: str) -> Broadcast | None:
        """The channel's newest broadcast (live, lingering, ending or ended)."""
        return self._broadcasts.get(stream_id)

    def create_session_sink(self, stream_id: str, session_id: str, user_id: str) -> SessionSink:
        """Called by the RTMP server on the event loop when a publish starts.

        ``session_id`` names a new broadcast's objects: reusing a live one would
        overwrite them, so it is refused (ValueError; the server then refuses the
        publish). A publish of a channel whose broadcast lingers continues it.
        """
        if session_id in self._sessions:
            raise ValueError(f"session {session_id!r} is already being packaged")
        broadcast = self._broadcasts.get(stream_id)
        newest = broadcast.newest if broadcast is not None else None
        if (
            broadcast is not None
            and newest is not None
            and broadcast.resumable(self.reconnect_window_s)
        ):
            if broadcast.linger is not None:
                broadcast.linger.cancel()
                broadcast.linger = None
            log.info(
                "publisher reconnected; the broadcast goes on",
                stream_id=stream_id,
                session_id=broadcast.session_id,
                connection=session_id,
                connections=len(broadcast.connections) + 1,
            )
            sink = SessionSink(self, broadcast, session_id, resume_from=newest.position)
        else:
            broadcast = Broadcast(
                stream_id, session_id, user_id, PartRetention(self.config.target_duration_s)
            )
            self._broadcasts[stream_id] = broadcast
            sink = SessionSink(self, broadcast, session_id)
        broadcast.connections.append(sink)
        self._sessions[session_id] = sink
        sink.add_done_callback(lambda: self._forget(session_id))
        return sink

    def _forget(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run background work (thumbnails, part deletion) owned by this object."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self) -> None:
        """Until the background work started so far (thumbnails, deletions) is done."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- a connection's end ------------------------------------------------------------

    async def connection_finished(self, sink: SessionSink, finished: Finished) -> None:
        """The connection's packager is done: end its broadcast, or let it linger."""
        broadcast = sink.broadcast
        if broadcast.newest is not sink:
            return  # the publisher is already back on a newer connection
        broadcast.duration_s = max(broadcast.duration_s, finished.duration_s)
        broadcast.last_reason = finished.reason
        if finished.reason in RESUMABLE and self.reconnect_window_s > 0 and not self._closing:
            log.info(
                "publisher dropped; waiting for a reconnect",
                stream_id=broadcast.stream_id,
                session_id=broadcast.session_id,
                reason=finished.reason,
                window_s=self.reconnect_window_s,
            )
            broadcast.linger = asyncio.get_running_loop().create_task(
                self._linger(broadcast), name=f"linger-{broadcast.session_id}"
            )
            return
        await self.end_broadcast(broadcast)

    async def _linger(self, broadcast: Broadcast) -> None:
        await asyncio.sleep(self.reconnect_window_s)
        broadcast.linger = None
        await self.end_broadcast(broadcast)

    async def stop_stream(self, stream_id: str) -> bool:
        """``stream.stop_requested``: a broadcast waiting for its publisher ends now (a
        publish after the stop must not resume what the owner stopped). True if one did."""
        broadcast = self._broadcasts.get(stream_id)
        if broadcast is None or broadcast.linger is None:
            return False
        broadcast.linger.cancel()
        broadcast.linger = None
        broadcast.last_reason = "stop_requested"
        await self.end_broadcast(broadcast)
        return True

    async def wait_ended(self, stream_id: str, timeout_s: float) -> None:
        """Until the channel's newest broadcast has ended (tests and shutdown)."""
        broadcast = self._broadcasts.get(stream_id)
        if broadcast is not None:
            await asyncio.wait_for(broadcast.done.wait(), timeout_s)

    async def end_broadcast(self, broadcast: Broadcast) -> None:
        """``stream.ended``, then the recording; once per broadcast."""
        if broadcast.ending:
            return
        broadcast.ending = True  # before any await: a publish now starts a new broadcast
        try:
            current = asyncio.current_task()
            # Older connections may still be storing their last outputs.
            others = [s.wait_closed() for s in broadcast.connections if s.task is not current]
            await asyncio.gather(*others, return_exceptions=True)
            await self._announce_end(broadcast)
        finally:
            broadcast.done.set()
            self._part_sweeps[broadcast] = asyncio.get_running_loop().create_task(
                self._sweep_parts_later(broadcast)
            )

    async def _announce_end(self, broadcast: Broadcast) -> None:
        newest = broadcast.newest
        if newest is None or not broadcast.started:
            log.info(
                "publish ended before anything was playable",
                stream_id=broadcast.stream_id,
                reason=broadcast.last_reason,
            )
            return
        await newest.publish(
            StreamEnded(
                stream_id=broadcast.stream_id,
                session_id=broadcast.session_id,
                reason=ended_reason(broadcast.last_reason),
                duration_s=broadcast.duration_s,
                segment_count=broadcast.stored_segments,
            )
        )
        if self.record and broadcast.stored_segments:
            await self._record(broadcast, newest)

    async def _record(self, broadcast: Broadcast, sink: SessionSink) -> None:
        stream_id, session_id = broadcast.stream_id, broadcast.session_id
        try:
            built = await build_recording(self.store, stream_id, session_id)
        except (StoreError, OSError) as exc:
            log.error("recording not built", stream_id=stream_id, error=f"{exc!r}")
            return
        if built is None:
            return
        key, size, segments = built
        playlist_key = keys.recording_playlist_key(stream_id, session_id)
        playlist = vod_playlist(broadcast.segments, self.config.target_duration_s)
        try:
            await self.store.put(
                playlist_key, playlist.encode(), content_type="application/vnd.apple.mpegurl"
            )
        except (StoreError, OSError) as exc:  # the single-file recording still stands
            log.error("recording playlist not stored", stream_id=stream_id, error=f"{exc!r}")
            playlist_key = ""
        video_id = recording_video_id(stream_id, session_id)
        master = await self._store_master(broadcast, video_id, playlist_key) if playlist_key else ""
        title, description = await self._describe(stream_id)
        log.info(
            "recording stored",
            stream_id=stream_id,
            object_key=key,
            byte_size=size,
            segments=segments,
            video_id=video_id,
        )
        recorded = await sink.publish(
            StreamRecorded(
                stream_id=stream_id,
                session_id=session_id,
                user_id=broadcast.user_id,
                video_id=video_id,
                object_key=key,
                duration_s=broadcast.duration_s,
                byte_size=size,
                title=title,
                description=description,
                playlist_key=playlist_key,
            )
        )
        if recorded and master:
            started = broadcast.started_event
            poster = await self._store_poster(broadcast, video_id)
            await sink.publish(
                VideoPublished(
                    event_id=published_event_id(video_id),
                    video_id=video_id,
                    user_id=broadcast.user_id,
                    title=title,
                    description=description,
                    duration_s=broadcast.duration_s,
                    master_key=master,
                    poster_key=poster,
                    width=started.width if started else 0,
                    height=started.height if started else 0,
                    origin="recording",
                    stream_id=stream_id,
                )
            )

    async def _store_master(self, broadcast: Broadcast, video_id: str, playlist_key: str) -> str:
        """``vod/{video_id}/master.m3u8`` naming the recording's VOD playlist; its key, or
        "" if it could not be stored (the recording then waits for the transcode)."""
        started = broadcast.started_event
        codecs = (
            ",".join(c for c in (started.video_codec, started.audio_codec) if c) if started else ""
        )
        variant = Variant(
            width=started.width if started else 0,
            height=started.height if started else 0,
            fps=started.fps if started else 0.0,
            codecs=codecs,
        )
        text = recording_master(broadcast.segments, variant, master_uri_of(playlist_key))
        key = master_key(video_id)
        try:
            await self.store.put(key, text.encode(), content_type="application/vnd.apple.mpegurl")
        except (StoreError, OSError) as exc:
            log.error("recording master not stored", video_id=video_id, error=f"{exc!r}")
            return ""
        return key

    async def _store_poster(self, broadcast: Broadcast, video_id: str) -> str:
        """The channel's live thumbnail as the recording's poster, if this broadcast made
        it (not a previous one's); its key, or "" (the transcode makes a poster later)."""
        source = keys.thumbnail_key(broadcast.stream_id)
        try:
            info = await self.store.stat(source)
            # Store clocks may keep whole seconds only.
            if info.last_modified < broadcast.created_at.replace(microsecond=0):
                return ""
            key = poster_key(video_id)
            await self.store.put(key, await self.store.read(source), content_type="image/jpeg")
        except ObjectNotFound:
            return ""
        except (StoreError, OSError) as exc:  # a poster is a nicety
            log.warning("recording poster not stored", video_id=video_id, error=f"{exc!r}")
            return ""
        return key

    async def _describe(self, stream_id: str) -> tuple[str, str]:
        if self.describe is None:
            return "", ""
        try:
            return await asyncio.wait_for(self.describe(stream_id), 5.0)
        except Exception as exc:  # the recording is worth more than its title
            log.warning("broadcast title not found", stream_id=stream_id, error=repr(exc))
            return "", ""

    # -- part retention ------------------------------------------------------------------

    def drop_parts(self, broadcast: Broadcast, parts: list[tuple[int, int]]) -> None:
        """Delete parts no playlist lists any more (in the background)."""
        names = [
            keys.part_key(broadcast.stream_id, broadcast.session_id, seq, i) for seq, i in parts
        ]
        self.spawn(self._delete(names))

    async def _delete(self, object_keys: list[str]) -> None:
        for key in object_keys:
            try:
                await self.store.delete(key)
            except (StoreError, OSError) as exc:  # a leftover part costs only space
                log.warning("live part not deleted", object_key=key, error=repr(exc))

    async def _sweep_parts_later(self, broadcast: Broadcast, delay: bool = True) -> None:
        """Every part object left, once an ENDLIST playlist (no parts) has replaced the
        last one that listed them."""
        try:
            if delay:
                await asyncio.sleep(broadcast.retention.keep_s)
            prefix = keys.session_prefix(broadcast.stream_id, broadcast.session_id)
            names = [
                info.key
                async for info in self.store.list(prefix)
                if keys.PART_NAME.fullmatch(info.key[len(prefix) :])
            ]
            await self._delete(names)
        except (StoreError, OSError) as exc:
            log.warning("live parts not swept", session_id=broadcast.session_id, error=repr(exc))
        finally:
            self._part_sweeps.pop(broadcast, None)

    # -- shutdown ------------------------------------------------------------------------

    async def aclose(self, timeout_s: float = 30.0) -> None:
        """Close every connection, end every broadcast now (lingering ones too), sweep
        their parts, and wait for the last events (ingest shutdown)."""
        self._closing = True
        sinks = list(self._sessions.values())
        for sink in sinks:
            sink.close("shutdown")  # a no-op for sinks the server already closed
        async with asyncio.timeout(timeout_s):
            if sinks:
                await asyncio.gather(*(sink.wait_closed() for sink in sinks))
            for broadcast in list(self._broadcasts.values()):
                if broadcast.linger is not None:
                    broadcast.linger.cancel()
                    broadcast.linger = None
                await self.end_broadcast(broadcast)
                await broadcast.done.wait()  # also one another task was ending
            sweeps = list(self._part_sweeps.items())
            for _broadcast, task in sweeps:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await asyncio.gather(*(self._sweep_parts_later(b, delay=False) for b, _ in sweeps))
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self.thumbnails.close()
