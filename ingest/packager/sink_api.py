"""The media sink the RTMP server feeds, one per publish session.

The server (``ingest/server.py``) defines the same interface in ``ingest/media.py``;
this Protocol mirrors it so the packager type-checks on its own. All methods are
called on the event loop and return at once: the packager's work happens on its own
thread (``ingest.packager.session``).
"""

from __future__ import annotations

from typing import Any, Protocol


class MediaSink(Protocol):
    def on_metadata(self, metadata: dict[str, Any]) -> None: ...

    def on_video_config(self, avcc: bytes) -> None:
        """An AVCDecoderConfigurationRecord (FLV AVC sequence header)."""

    def on_audio_config(self, asc: bytes) -> None:
        """An AudioSpecificConfig (FLV AAC sequence header)."""

    def on_video(self, dts_ms: int, cts_ms: int, keyframe: bool, avcc_nalus: bytes) -> None:
        """One access unit, length-prefixed NAL units; pts = dts + cts."""

    def on_audio(self, dts_ms: int, raw_aac: bytes) -> None:
        """One raw AAC access unit."""

    def close(self, reason: str) -> None:
        """The publish ended ("publisher_left", "stop_requested", "timeout", "error")."""
