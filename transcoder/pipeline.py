"""Decode once, encode N renditions: the ladder's main loop.

The calling thread demuxes and decodes the source (FFmpeg's own decoder threads do
the heavy part), turns frames upright, picks the keyframes, feeds the sprite, encodes
the audio once, and hands each frame and audio packet to every
:class:`~transcoder.rendition.RenditionEncoder` (a thread each).

Keyframes: the first frame at or after every ``keyframe_s`` mark of media time is an
IDR frame in every rendition, and no other frame is (scene cuts off). Segments
(``segment_s``, a multiple of it) therefore start on the same frame everywhere, which
is what lets a player switch renditions at any segment boundary.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Final

import av
import av.error
from av.audio.codeccontext import AudioCodecContext
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.audio.stream import AudioStream
from av.container import InputContainer
from av.packet import Packet
from av.video.frame import PictureType, VideoFrame

from transcoder.errors import PoisonInputError
from transcoder.ladder import Rung
from transcoder.rendition import (
    AudioPacket,
    EncoderSettings,
    HlsFiles,
    RenditionEncoder,
    RenditionOutput,
)
from transcoder.source import Rotator, SourceInfo
from transcoder.storeio import Uploads
from transcoder.thumbnails import SpriteSheet

__all__ = ["LadderStats", "encode_ladder"]

AAC_RATES: Final = (44100, 48000)
# Corrupt packets are skipped, within reason: past this many (and this share of all
# packets) the source is broken, not scratched.
MAX_BAD_PACKETS: Final = 50
MAX_BAD_SHARE: Final = 0.05


@dataclass(frozen=True, slots=True)
class LadderStats:
    outputs: list[RenditionOutput]
    frames: int  # frames handed to every rendition
    dropped: int  # frames with missing or repeated timestamps
    bad_packets: int
    duration_s: float  # media time from the first to past the last frame


def _audio_encoder(stream: AudioStream, kbps: int) -> tuple[AudioCodecContext, AudioResampler]:
    rate = stream.rate if stream.rate in AAC_RATES else 48000
    layout = "mono" if stream.codec_context.channels == 1 else "stereo"
    encoder = av.CodecContext.create("aac", "w")
    assert isinstance(encoder, AudioCodecContext)
    encoder.sample_rate = rate
    encoder.layout = layout
    encoder.format = "fltp"
    encoder.bit_rate = kbps * 1000
    encoder.time_base = Fraction(1, rate)
    encoder.open()
    resampler = AudioResampler(format="fltp", layout=layout, rate=rate, frame_size=1024)
    return encoder, resampler


class _Fanout:
    """The renditions, fed together; the first failing thread's error wins."""

    def __init__(self, encoders: Sequence[RenditionEncoder]) -> None:
        self.encoders = list(encoders)

    def video(self, frame: VideoFrame, keyframe: bool) -> None:
        for encoder in self.encoders:
            encoder.put(("video", (frame, keyframe)))

    def audio(self, packets: Sequence[Packet[AudioStream]]) -> None:
        for packet in packets:
            shared = AudioPacket(
                data=bytes(packet),
                pts=packet.pts,
                dts=packet.dts,
                duration=packet.duration or 0,
                time_base=packet.time_base or Fraction(1, 48000),
            )
            for encoder in self.encoders:
                encoder.put(("audio", shared))

    def finish(self) -> list[RenditionOutput]:
        for encoder in self.encoders:
            encoder.put(None)
        return [encoder.join() for encoder in self.encoders]

    def abort(self) -> None:
        # Errors here are the threads' own; the first one is already propagating.
        for encoder in self.encoders:
            with contextlib.suppress(BaseException):
                encoder.put(None)
        for encoder in self.encoders:
            with contextlib.suppress(BaseException):
                encoder.join()


def encode_ladder(
    container: InputContainer,
    info: SourceInfo,
    rungs: Sequence[Rung],
    *,
    uploads: Uploads,
    key_prefix: str,
    encoder_settings: EncoderSettings,
    audio_kbps: int,
    sprite: SpriteSheet | None,
    progress: Callable[[float], None],
) -> LadderStats:
    video = container.streams.video[0]
    video.thread_type = "AUTO"
    time_base = video.time_base or Fraction(1, 90000)
    audio_stream = container.streams.audio[0] if container.streams.audio else None
    audio: tuple[AudioCodecContext, AudioResampler] | None = None
    if audio_stream is not None:
        audio = _audio_encoder(audio_stream, audio_kbps)

    fanout = _Fanout(
        [
            RenditionEncoder(
                rung=rung,
                files=HlsFiles(f"{key_prefix}{rung.name}/", uploads),
                settings=encoder_settings,
                source_time_base=time_base,
                fps=info.fps,
                audio_template=audio[0] if audio else None,
            )
            for rung in rungs
        ]
    )
    for encoder in fanout.encoders:
        encoder.start()
    loop = _DecodeLoop(
        fanout=fanout,
        rotate=Rotator(info.rotation),
        time_base=time_base,
        fps=info.fps,
        keyframe_s=encoder_settings.keyframe_s,
        sprite=sprite,
        progress=progress,
    )
    try:
        streams = [s for s in (video, audio_stream) if s is not None]
        for packet in container.demux(streams):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                loop.bad_packet()
                continue
            for frame in frames:
                if isinstance(frame, VideoFrame):
                    loop.video_frame(frame)
                elif audio is not None and isinstance(frame, AudioFrame):
                    fanout.audio(_encode_audio(audio, frame))
        if audio is not None:
            fanout.audio(_encode_audio(audio, None))
        if loop.frames == 0:
            raise PoisonInputError("no video frame could be decoded")
        outputs = fanout.finish()
    except BaseException:
        fanout.abort()
        raise
    return LadderStats(
        outputs=outputs,
        frames=loop.frames,
        dropped=loop.dropped,
        bad_packets=loop.bad,
        duration_s=loop.duration_s(),
    )


def _encode_audio(
    audio: tuple[AudioCodecContext, AudioResampler], frame: AudioFrame | None
) -> list[Packet[AudioStream]]:
    encoder, resampler = audio
    packets: list[Packet[AudioStream]] = []
    for resampled in resampler.resample(frame):
        packets += encoder.encode(resampled)
    if frame is None:
        packets += encoder.encode(None)
    return packets


class _DecodeLoop:
    """Per-frame decisions of the main loop: timestamps, keyframes, sprite, progress."""

    def __init__(
        self,
        *,
        fanout: _Fanout,
        rotate: Rotator,
        time_base: Fraction,
        fps: Fraction,
        keyframe_s: float,
        sprite: SpriteSheet | None,
        progress: Callable[[float], None],
    ) -> None:
        self.fanout = fanout
        self.rotate = rotate
        self.time_base = time_base
        self.keyframe_s = keyframe_s
        self.sprite = sprite
        self.progress = progress
        # Ticks of one nominal frame: fills in missing timestamps.
        self.step = max(1, round(1 / (fps * time_base)))
        # Half a frame of slack, so a 29.97 fps frame at 1.9987 s counts as the 2 s mark.
        self.slack_s = 0.5 / float(fps)
        self.first_pts: int | None = None
        self.last_pts: int | None = None
        self.next_keyframe_s = 0.0
        self.frames = 0
        self.dropped = 0
        self.bad = 0
        self.packets = 0

    def bad_packet(self) -> None:
        self.bad += 1
        if self.bad > MAX_BAD_PACKETS and self.bad > MAX_BAD_SHARE * max(1, self.frames):
            raise PoisonInputError(f"{self.bad} corrupt packets; the file is damaged")

    def video_frame(self, frame: VideoFrame) -> None:
        pts = frame.pts
        if pts is None:
            pts = 0 if self.last_pts is None else self.last_pts + self.step
        if self.last_pts is not None and pts <= self.last_pts:
            self.dropped += 1  # x264 needs strictly increasing timestamps
            return
        if self.first_pts is None:
            self.first_pts = pts
        self.last_pts = pts
        upright = self.rotate(frame)
        upright.pts = pts
        upright.time_base = self.time_base
        time_s = float((pts - self.first_pts) * self.time_base)
        keyframe = time_s + self.slack_s >= self.next_keyframe_s
        if keyframe:
            while self.next_keyframe_s <= time_s + self.slack_s:
                self.next_keyframe_s += self.keyframe_s
        # Set once here, before the frame is shared: decoded frames carry the source's
        # I/P/B types, which libx264 would otherwise obey.
        upright.pict_type = PictureType.I if keyframe else PictureType.NONE
        if self.sprite is not None:
            self.sprite.offer(upright, time_s)
        self.fanout.video(upright, keyframe)
        self.frames += 1
        self.progress(time_s)

    def duration_s(self) -> float:
        if self.first_pts is None or self.last_pts is None:
            return 0.0
        return float((self.last_pts - self.first_pts + self.step) * self.time_base)
