"""The packager fed a real H.264/AAC FLV (ffmpeg CLI): the parts play back with PyAV.

The FLV's tags are parsed here into the sink calls the RTMP server makes
(``flvfile.replay``); the packager core runs synchronously so the test is exact.
"""

from __future__ import annotations

import io
import itertools
import time
from pathlib import Path
from typing import Any

import av
import pytest

from common.logs import get_logger
from ingest.packager import flvfile
from ingest.packager.boxes import iter_boxes
from ingest.packager.packager import (
    AudioConfig,
    AudioFrame,
    Close,
    Finished,
    InitReady,
    Metadata,
    Output,
    Packager,
    PackagerConfig,
    PartReady,
    SegmentReady,
    VideoConfig,
    VideoFrame,
)
from ingest.packager.testmedia import make_flv

pytestmark = pytest.mark.unit


class SyncSink:
    """The sink interface over a Packager, without the thread (deterministic)."""

    def __init__(self, config: PackagerConfig | None = None) -> None:
        self.packager = Packager(config or PackagerConfig(), get_logger("test"))
        self.outputs: list[Output] = []
        self.clock = 1000.0  # wall clock: advances ~ real time, whatever the timestamps

    def _tick(self) -> float:
        self.clock += 4.0 / 310
        return self.clock

    def _feed(self, command: Any) -> None:
        self.outputs += self.packager.feed(command)

    def on_metadata(self, metadata: dict[str, Any]) -> None:
        self._feed(Metadata(metadata))

    def on_video_config(self, avcc: bytes) -> None:
        self._feed(VideoConfig(avcc))

    def on_audio_config(self, asc: bytes) -> None:
        self._feed(AudioConfig(asc))

    def on_video(self, dts_ms: int, cts_ms: int, keyframe: bool, avcc_nalus: bytes) -> None:
        self._feed(VideoFrame(dts_ms, cts_ms, keyframe, avcc_nalus, time.monotonic(), self._tick()))

    def on_audio(self, dts_ms: int, raw_aac: bytes) -> None:
        self._feed(AudioFrame(dts_ms, raw_aac, time.monotonic(), self._tick()))

    def close(self, reason: str) -> None:
        self._feed(Close(reason))

    def of(self, kind: type[Any]) -> list[Any]:
        return [o for o in self.outputs if isinstance(o, kind)]


def decode(blob: bytes) -> tuple[list[float], list[bool], int, float]:
    """(video frame times, key flags, audio frames, audio end) of an fMP4 buffer."""
    times: list[float] = []
    keys: list[bool] = []
    audio_frames, audio_end = 0, 0.0
    with av.open(io.BytesIO(blob), mode="r", format="mp4") as container:
        if container.streams.video:
            for frame in container.decode(container.streams.video[0]):
                assert frame.time is not None
                times.append(frame.time)
                keys.append(frame.key_frame)
    with av.open(io.BytesIO(blob), mode="r", format="mp4") as container:
        if container.streams.audio:
            for packet in container.demux(container.streams.audio[0]):
                if packet.size:
                    audio_frames += 1
                    assert packet.pts is not None
                    assert packet.duration is not None
                    audio_end = float((packet.pts + packet.duration) * packet.time_base)
    return times, keys, audio_frames, audio_end


def source_counts(path: Path) -> tuple[int, int]:
    with av.open(str(path), mode="r") as container:
        video = sum(1 for p in container.demux(video=0) if p.size) if container.streams.video else 0
    with av.open(str(path), mode="r") as container:
        audio = sum(1 for p in container.demux(audio=0) if p.size) if container.streams.audio else 0
    return video, audio


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_flv(tmp_path_factory.mktemp("flv") / "av.flv", seconds=4, gop=30, bframes=2)


def test_parts_play_back_frame_exact(media: Path) -> None:
    sink = SyncSink()
    flvfile.replay(media, sink)
    (init,) = sink.of(InitReady)
    parts: list[PartReady] = sink.of(PartReady)
    segments: list[SegmentReady] = sink.of(SegmentReady)
    (finished,) = sink.of(Finished)
    assert init.video_codec.startswith("avc1.64")  # x264 High profile
    assert init.audio_codec == "mp4a.40.2"
    assert (init.width, init.height, init.fps) == (640, 360, 30.0)

    blob = init.data + b"".join(p.data for p in parts)
    # The segment objects are exactly their parts, concatenated.
    assert blob == init.data + b"".join(s.data for s in segments)
    assert [b.kind for b in iter_boxes(blob)][:2] == ["ftyp", "moov"]

    times, _keys, audio_frames, audio_end = decode(blob)
    video_in, audio_in = source_counts(media)
    assert (len(times), audio_frames) == (video_in, audio_in) == (120, 188 + 1)
    # Presentation times are the publisher's (pts = dts + cts), one frame apart.
    ordered = sorted(times)
    assert ordered[0] == pytest.approx(0.0, abs=0.07)  # B-frame delay
    steps = [b - a for a, b in itertools.pairwise(ordered)]
    assert all(step == pytest.approx(1 / 30, abs=0.0015) for step in steps)
    # Durations: the playlist's (segments) and the media's agree within a frame.
    media_s = ordered[-1] - ordered[0] + 1 / 30
    assert sum(s.duration_s for s in segments) == pytest.approx(media_s, abs=1 / 30)
    assert finished.duration_s == pytest.approx(4.0, abs=1 / 30)
    tags = list(flvfile.read_tags(media.read_bytes()))
    last_audio_ms = max(t.timestamp_ms for t in tags if t.kind == flvfile.TAG_AUDIO)
    assert audio_end == pytest.approx(last_audio_ms / 1000 + 1024 / 48000, abs=0.002)
    # Segments follow the 1 s GOP and start on a keyframe.
    assert [round(s.duration_s, 2) for s in segments] == [1.0, 1.0, 1.0, 1.0]
    assert all(s.independent for s in segments)
    assert all(p.duration_s <= init.part_target_s for p in parts)


def test_every_segment_decodes_on_its_own(media: Path) -> None:
    sink = SyncSink()
    flvfile.replay(media, sink)
    (init,) = sink.of(InitReady)
    for segment in sink.of(SegmentReady):
        times, keys, _, _ = decode(init.data + segment.data)
        assert keys[0], f"segment {segment.sequence} does not start with a keyframe"
        assert len(times) == 30


def test_independent_parts_start_with_a_keyframe(media: Path) -> None:
    sink = SyncSink()
    flvfile.replay(media, sink)
    (init,) = sink.of(InitReady)
    for part in sink.of(PartReady):
        if part.independent:
            _, keys, _, _ = decode(init.data + part.data)
            assert keys[0]


@pytest.mark.parametrize(("video", "audio"), [(False, True), (True, False)])
def test_single_track_publishers(tmp_path: Path, video: bool, audio: bool) -> None:
    flv = make_flv(tmp_path / "one.flv", seconds=2, video=video, audio=audio, sample_rate=44100)
    sink = SyncSink()
    flvfile.replay(flv, sink)
    (init,) = sink.of(InitReady)
    assert bool(init.video_codec) is video
    assert bool(init.audio_codec) is audio
    parts: list[PartReady] = sink.of(PartReady)
    assert all(0 < p.duration_s <= init.part_target_s for p in parts)
    times, _, audio_frames, _ = decode(init.data + b"".join(p.data for p in parts))
    video_in, audio_in = source_counts(flv)
    assert (len(times), audio_frames) == (video_in, audio_in)
    assert sum(s.duration_s for s in sink.of(SegmentReady)) == pytest.approx(2.0, abs=0.05)


def test_broken_timestamps_are_survived(media: Path) -> None:
    """Backwards steps, a 2^32 wrap and a reset mid-stream: logged, repaired, playable."""
    sink = SyncSink()
    shift = {"video": 0, "audio": 0}

    class Mangler:
        def __getattr__(self, name: str) -> Any:
            return getattr(sink, name)

        def on_video(self, dts: int, cts: int, key: bool, data: bytes) -> None:
            if 1000 <= dts < 1100:
                dts -= 50  # back in time
            elif dts >= 2000 and not shift["video"]:
                shift["video"] = 2**32 - 2000  # wraps
            sink.on_video(dts + shift["video"], cts, key, data)

        def on_audio(self, dts: int, data: bytes) -> None:
            if dts >= 2000 and not shift["audio"]:
                shift["audio"] = 2**32 - 2000
            sink.on_audio(dts + shift["audio"], data)

    flvfile.replay(media, Mangler())
    (init,) = sink.of(InitReady)
    parts: list[PartReady] = sink.of(PartReady)
    times, _, audio_frames, _ = decode(init.data + b"".join(p.data for p in parts))
    assert len(times) == 120
    assert audio_frames > 150
    assert sum(s.duration_s for s in sink.of(SegmentReady)) == pytest.approx(4.0, abs=0.2)


def test_garbage_config_is_logged_not_raised(media: Path) -> None:
    sink = SyncSink()
    sink.on_video_config(b"\x01garbage")
    sink.on_audio_config(b"\xff")
    flvfile.replay(media, sink)  # the real configs follow
    (init,) = sink.of(InitReady)
    assert init.video_codec
    assert init.audio_codec


def test_nothing_usable_produces_nothing() -> None:
    sink = SyncSink()
    sink.on_metadata({"videocodecid": 7.0})
    for n in range(100):
        sink.on_video(n * 33, 0, n % 30 == 0, b"\x00\x00\x00\x01\x65")
    sink.close("publisher_left")
    assert [type(o) for o in sink.outputs] == [Finished]
