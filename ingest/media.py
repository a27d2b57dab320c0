"""THE SEAM between the RTMP session and the packager: what a publish hands downstream.

The RTMP side (``ingest/server.py`` → ``ingest/session.py``) calls, for every accepted
publish::

    sink = await create_session_sink(stream_id=…, session_id=…, user_id=…)

and then feeds it, in arrival order, from that one publisher:

- ``on_metadata(dict)`` — ``onMetaData`` as sent (width, height, framerate, encoder…;
  untrusted, informational);
- ``on_video_config(avcc)`` — an AVCDecoderConfigurationRecord (ISO/IEC 14496-15
  5.3.3.1), already parsed once and found well-formed; again whenever it changes;
- ``on_audio_config(asc)`` — an AAC AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1),
  checked the same way;
- ``on_video(dts_ms, cts_ms, keyframe, avcc_nalus)`` — one access unit of H.264 NAL
  units with 4/2/1-byte length prefixes (the config's ``lengthSizeMinusOne``);
  ``pts = dts + cts``; never before the first ``on_video_config``;
- ``on_audio(dts_ms, raw_aac)`` — one raw AAC frame (no ADTS header); never before the
  first ``on_audio_config``;
- ``close(reason)`` — exactly once, last. ``reason`` is one of :data:`CLOSE_REASONS`
  (the first four are ``stream.ended``'s own vocabulary).

Timestamps are milliseconds on one timeline per publish: 32-bit wraparound undone,
never decreasing per track (a publisher's clock that jumps back is rebased forward).
Only H.264 video and AAC audio reach a sink; anything else was refused upstream.

Each method may return at once (``None``: the sink queues the work itself, as the
packager's ``SessionSink`` does) or return an awaitable, which the session awaits
before it reads more from the socket — a slow sink then pushes back on the publisher
through TCP instead of queueing without bound. The factory may likewise return the
sink or an awaitable of it. Keep CPU work (PyAV) off the event loop; an exception from
a sink method ends the publish (``close("error")`` is still called).

``stream.started`` / ``stream.ended`` are the packager's: it alone knows the codecs,
the init segment and the segment count. Ingest publishes ``stats.ingest``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, TypeAlias, runtime_checkable

from common.logs import get_logger

__all__ = [
    "CLOSE_REASONS",
    "CloseReason",
    "MediaSink",
    "NullSink",
    "RecordingSink",
    "SinkFactory",
    "create_sink",
    "null_sink_factory",
    "settle",
]

log = get_logger(__name__)

CloseReason = Literal["publisher_left", "stop_requested", "timeout", "error", "shutdown", "dropped"]
# "shutdown": this ingest process is stopping; the publisher will likely reconnect (to
# another process). "dropped": the connection ended without an unpublish (killed
# encoder, network cut) — the packager keeps the broadcast open for its reconnect
# window, as it does after "timeout"; "publisher_left" is a deliberate unpublish.
CLOSE_REASONS: Final[tuple[CloseReason, ...]] = (
    "publisher_left",
    "stop_requested",
    "timeout",
    "error",
    "shutdown",
    "dropped",
)


# A sink method's result: None (done, or queued by the sink) or something to await.
Done: TypeAlias = Awaitable[None] | None


@runtime_checkable
class MediaSink(Protocol):
    """One publish session's media, in order (see the module docstring)."""

    def on_metadata(self, metadata: dict[str, Any]) -> Done: ...

    def on_video_config(self, avcc: bytes) -> Done: ...

    def on_audio_config(self, asc: bytes) -> Done: ...

    def on_video(self, dts_ms: int, cts_ms: int, keyframe: bool, avcc_nalus: bytes) -> Done: ...

    def on_audio(self, dts_ms: int, raw_aac: bytes) -> Done: ...

    def close(self, reason: CloseReason) -> Done: ...


class SinkFactory(Protocol):
    """``create_session_sink``: the packager provides one; ingest calls it per publish."""

    def __call__(
        self, stream_id: str, session_id: str, user_id: str
    ) -> MediaSink | Awaitable[MediaSink]: ...


async def settle(result: Done) -> None:
    """Await a sink method's result when it is awaitable."""
    if result is not None:
        await result


async def create_sink(
    factory: SinkFactory, stream_id: str, session_id: str, user_id: str
) -> MediaSink:
    """Call the factory; await its result when it is awaitable."""
    made = factory(stream_id, session_id, user_id)
    if inspect.isawaitable(made):
        sink: MediaSink = await made
        return sink
    return made


class NullSink:
    """Drops everything: what ingest uses until a packager is wired in."""

    def __init__(self, stream_id: str = "", session_id: str = "") -> None:
        self.stream_id = stream_id
        self.session_id = session_id

    async def on_metadata(self, metadata: dict[str, Any]) -> None:
        return None

    async def on_video_config(self, avcc: bytes) -> None:
        return None

    async def on_audio_config(self, asc: bytes) -> None:
        return None

    async def on_video(self, dts_ms: int, cts_ms: int, keyframe: bool, avcc_nalus: bytes) -> None:
        return None

    async def on_audio(self, dts_ms: int, raw_aac: bytes) -> None:
        return None

    async def close(self, reason: CloseReason) -> None:
        return None


async def null_sink_factory(stream_id: str, session_id: str, user_id: str) -> MediaSink:
    log.warning("no packager wired: media of this publish is dropped", stream_id=stream_id)
    return NullSink(stream_id, session_id)


@dataclass
class RecordingSink:
    """Keeps every call (``(method, args…)``) in order; tests wait on it."""

    stream_id: str = ""
    session_id: str = ""
    user_id: str = ""
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    closed_with: CloseReason | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def _record(self, *call: Any) -> None:
        self.calls.append(call)
        self._changed.set()

    async def on_metadata(self, metadata: dict[str, Any]) -> None:
        self._record("metadata", metadata)

    async def on_video_config(self, avcc: bytes) -> None:
        self._record("video_config", avcc)

    async def on_audio_config(self, asc: bytes) -> None:
        self._record("audio_config", asc)

    async def on_video(self, dts_ms: int, cts_ms: int, keyframe: bool, avcc_nalus: bytes) -> None:
        self._record("video", dts_ms, cts_ms, keyframe, avcc_nalus)

    async def on_audio(self, dts_ms: int, raw_aac: bytes) -> None:
        self._record("audio", dts_ms, raw_aac)

    async def close(self, reason: CloseReason) -> None:
        if self.closed_with is not None:
            raise AssertionError(f"close() called twice ({self.closed_with}, then {reason})")
        self.closed_with = reason
        self._record("close", reason)

    def of(self, method: str) -> list[tuple[Any, ...]]:
        return [call for call in self.calls if call[0] == method]

    async def wait_for(self, predicate: Callable[[RecordingSink], bool], timeout_s: float) -> None:
        """Until ``predicate(self)`` is true; ``TimeoutError`` after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()
