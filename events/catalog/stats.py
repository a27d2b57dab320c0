"""Live statistics: ``stats.*``, short-lived by nature."""

from __future__ import annotations

from typing import ClassVar

from events.envelope import Event


class StatsViewers(Event, frozen=True, tag="stats.viewers"):
    """One gateway's viewer count for a stream; the projection sums gateways."""

    key_field: ClassVar[str] = "stream_id"
    stream_id: str
    gateway_id: str
    viewers: int


class StatsIngest(Event, frozen=True, tag="stats.ingest"):
    """What the publisher sends, measured by ingest every few seconds."""

    key_field: ClassVar[str] = "stream_id"
    stream_id: str
    session_id: str
    bitrate_kbps: float
    fps: float
    # Mean time between keyframes in the window (0 when fewer than two arrived).
    keyframe_interval_s: float = 0.0
