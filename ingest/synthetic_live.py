"""Publish the synthetic source over RTMP in real time: paint, encode, pace, send.

Encoding runs in a worker thread one frame at a time (PyAV work never blocks the event
loop, STYLE.md); each packet leaves when the wall clock reaches its timestamp, as a
camera would send it, so the server sees a live publisher and not a file dumped at
network speed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from ingest.rtmp_publisher import RTMPPublisher, RTMPTarget
from ingest.synthetic import EncodedPacket, LiveEncoder, SourceConfig

__all__ = ["LiveReport", "publish_synthetic"]


@dataclass(slots=True)
class LiveReport:
    """What was sent, for the caller's status line."""

    frames: int = 0
    seconds: float = 0.0
    bytes_sent: int = 0
    late_frames: int = 0  # encoded after their send time (the machine is too busy)


async def publish_synthetic(
    url: str,
    *,
    config: SourceConfig | None = None,
    stop: asyncio.Event | None = None,
    duration_s: float | None = None,
) -> LiveReport:
    """Publish to ``url`` until ``stop`` is set or ``duration_s`` of media has gone out.

    Raises :class:`~ingest.rtmp_publisher.PublisherError` (refused key, unreachable
    server, the server hanging up).
    """
    cfg = config or SourceConfig()
    stop = stop or asyncio.Event()
    report = LiveReport()
    encoder = await asyncio.to_thread(LiveEncoder, cfg)
    publisher = RTMPPublisher(RTMPTarget.parse(url))
    try:
        await publisher.connect()
        publisher.send_metadata(
            {
                "width": float(cfg.width),
                "height": float(cfg.height),
                "framerate": float(cfg.fps),
                "videocodecid": 7.0,
                "videodatarate": float(cfg.video_kbps),
                "audiocodecid": 10.0,
                "audiosamplerate": float(cfg.sample_rate),
                "audiodatarate": float(cfg.audio_kbps),
                "stereo": True,
                "encoder": "VideoPick synthetic source (PyAV)",
            }
        )
        configs_sent = False
        started = time.monotonic()
        stop_wait = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                if duration_s is not None and report.seconds >= duration_s:
                    break
                packets = await asyncio.to_thread(encoder.next_packets)
                report.frames += 1
                report.seconds = report.frames / cfg.fps
                if not configs_sent and encoder.video_config is not None:
                    publisher.send_video_config(encoder.video_config)
                    publisher.send_audio_config(encoder.audio_config)
                    configs_sent = True
                if not configs_sent:
                    continue
                due = started + (packets[0].dts_ms / 1000 if packets else 0.0)
                delay = due - time.monotonic()
                if delay > 0:
                    # Wake early on stop: Ctrl-C must not wait for a frame's slot.
                    await asyncio.wait({stop_wait}, timeout=delay)
                else:
                    report.late_frames += delay < -0.1
                for packet in packets:
                    _send(publisher, packet)
                await publisher.drain()
                report.bytes_sent = publisher.bytes_sent
        finally:
            stop_wait.cancel()
        await publisher.close()
    finally:
        await publisher.abort()
    return report


def _send(publisher: RTMPPublisher, packet: EncodedPacket) -> None:
    if packet.kind == "video":
        publisher.send_video(packet.dts_ms, packet.pts_ms, packet.keyframe, packet.data)
    else:
        publisher.send_audio(packet.dts_ms, packet.data)
