"""A publish session: FLV bodies → sink calls, timestamps repaired, stats counted."""

from __future__ import annotations

from typing import Any

import pytest

from ingest.media import MediaSink, RecordingSink, create_sink
from ingest.rtmp.connection import RTMPConnection
from ingest.rtmp.errors import ProtocolError
from ingest.rtmp.events import MediaMessage, MetaData
from ingest.rtmp.messages import MessageType
from ingest.session import PublishSession, StreamClock
from tests.unit.rtmp_peer import (
    ASC_FFMPEG,
    AVC_CONFIG,
    FIXTURES,
    Publisher,
    audio_tag,
    c2_for,
    det_random,
    digest_c0c1,
    drive,
    video_tag,
)

pytestmark = pytest.mark.unit

VIDEO, AUDIO = MessageType.VIDEO, MessageType.AUDIO


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def session(sink: MediaSink | None = None, clock: FakeClock | None = None) -> PublishSession:
    return PublishSession(
        sink or RecordingSink(),
        stream_id="s1",
        session_id="sess",
        user_id="u1",
        clock=clock or FakeClock(),
    )


def video(ts: int, body: bytes) -> MediaMessage:
    return MediaMessage(VIDEO, 1, ts, body)


def audio(ts: int, body: bytes) -> MediaMessage:
    return MediaMessage(AUDIO, 1, ts, body)


async def test_the_captured_ffmpeg_publish_reaches_the_sink_in_order() -> None:
    events = drive(
        RTMPConnection(random_bytes=det_random), (FIXTURES / "ffmpeg_silent_6s.bin").read_bytes()
    )
    sink = RecordingSink()
    publish = session(sink)
    for event in events:
        if isinstance(event, MetaData):
            await publish.on_metadata(event.values)
        elif isinstance(event, MediaMessage):
            await publish.on_media(event)
    await publish.close("publisher_left")

    kinds = [call[0] for call in sink.calls]
    assert kinds[:3] == ["metadata", "video_config", "audio_config"]
    assert sink.calls[1][1] == AVC_CONFIG
    assert kinds[-1] == "close"
    videos, audios = sink.of("video"), sink.of("audio")
    assert len(videos) == 60  # 6 s at 10 fps (the end-of-sequence tag is not a frame)
    assert len(audios) == 260  # every raw AAC frame (261 audio messages, one config)
    assert videos[0][3] is True  # the first frame is a keyframe
    video_dts = [call[1] for call in videos]
    audio_dts = [call[1] for call in audios]
    assert video_dts == sorted(video_dts)
    assert audio_dts == sorted(audio_dts)
    assert audio_dts[-1] == 6014  # pyrtmp (a): the audio reaches 6 s
    assert publish.video_config is not None
    assert publish.video_config.codec == "avc1.42c00a"
    assert publish.audio_config is not None
    assert publish.audio_config.codec == "mp4a.40.2"


async def test_frames_before_their_config_are_dropped() -> None:
    sink = RecordingSink()
    publish = session(sink)
    await publish.on_media(video(0, video_tag(1, b"\x00\x00\x00\x01\x65")))
    await publish.on_media(audio(0, audio_tag(1, b"\x21\x10")))
    assert sink.calls == []
    assert publish.dropped_before_config == 2


async def test_configs_are_passed_on_when_they_change() -> None:
    sink = RecordingSink()
    publish = session(sink)
    for _ in range(2):
        await publish.on_media(video(0, video_tag(0, AVC_CONFIG)))
    other = AVC_CONFIG[:3] + b"\x1f" + AVC_CONFIG[4:]  # another level
    await publish.on_media(video(40, video_tag(0, other)))
    assert [call[1] for call in sink.of("video_config")] == [AVC_CONFIG, other]


async def test_garbage_and_foreign_codecs_are_refused() -> None:
    publish = session()
    with pytest.raises(ProtocolError, match="configurationVersion 9"):
        await publish.on_media(video(0, video_tag(0, b"\x09" + AVC_CONFIG[1:])))
    with pytest.raises(ProtocolError, match=r"unsupported video codec HEVC \(FLV codec id 12\)"):
        await publish.on_media(video(0, video_tag(1, b"\x00", codec=12)))
    with pytest.raises(ProtocolError, match=r"unsupported audio codec MP3"):
        await publish.on_media(audio(0, b"\x2f\xff\xfb\x90"))


async def test_cts_and_keyframes_pass_through() -> None:
    sink = RecordingSink()
    publish = session(sink)
    await publish.on_media(video(0, video_tag(0, AVC_CONFIG)))
    await publish.on_media(video(0, video_tag(1, b"idr", cts=66)))
    await publish.on_media(video(33, video_tag(1, b"p", keyframe=False, cts=33)))
    assert sink.of("video") == [("video", 0, 66, True, b"idr"), ("video", 33, 33, False, b"p")]


async def test_a_sink_with_plain_methods_works_too() -> None:
    class PlainSink:
        def __init__(self) -> None:
            self.calls: list[tuple[Any, ...]] = []

        def on_metadata(self, metadata: dict[str, Any]) -> None:
            self.calls.append(("metadata",))

        def on_video_config(self, avcc: bytes) -> None:
            self.calls.append(("video_config",))

        def on_audio_config(self, asc: bytes) -> None:
            self.calls.append(("audio_config",))

        def on_video(self, dts_ms: int, cts_ms: int, keyframe: bool, avcc_nalus: bytes) -> None:
            self.calls.append(("video", dts_ms))

        def on_audio(self, dts_ms: int, raw_aac: bytes) -> None:
            self.calls.append(("audio", dts_ms))

        def close(self, reason: str) -> None:
            self.calls.append(("close", reason))

    plain = PlainSink()

    def factory(stream_id: str, session_id: str, user_id: str) -> PlainSink:
        return plain

    sink = await create_sink(factory, "s", "x", "u")
    publish = session(sink)
    await publish.on_media(video(0, video_tag(0, AVC_CONFIG)))
    await publish.on_media(video(0, video_tag(1, b"f")))
    await publish.close("timeout")
    await publish.close("error")  # once only
    assert plain.calls == [("video_config",), ("video", 0), ("close", "timeout")]


def test_the_clock_undoes_the_2_32_wrap() -> None:
    clock = StreamClock()
    assert [clock("video", t) for t in (0xFFFFFFE0, 0xFFFFFFFF, 0x10)] == [
        0xFFFFFFE0,
        0xFFFFFFFF,
        0x100000010,
    ]


def test_the_clock_clamps_jitter_and_rebases_resets() -> None:
    clock = StreamClock()
    assert clock("audio", 60_000) == 60_000
    assert clock("video", 60_010) == 60_010
    assert clock("audio", 59_990) == 60_000  # 10 ms back: jitter, held
    # The encoder restarts its clock at 0: the stream moves forward together.
    assert clock("video", 0) == 60_010
    assert clock("video", 33) == 60_043
    assert clock("audio", 23) == 60_033
    assert clock.rebased == 1


async def test_stats_windows() -> None:
    fake = FakeClock()
    publish = session(clock=fake)
    await publish.on_media(video(0, video_tag(0, AVC_CONFIG)))
    for i in range(30):
        await publish.on_media(video(i * 33, video_tag(1, bytes(1000 - 5), keyframe=i == 0)))
    fake.now += 2.0
    stats = publish.take_stats()
    assert stats.fps == 15.0  # 30 frames in 2 s
    assert stats.bitrate_kbps == round(
        (len(video_tag(0, AVC_CONFIG)) + 30 * 1000) * 8 / 1000 / 2, 1
    )
    assert stats.keyframe_interval_s == 0.0  # one keyframe: no interval yet
    fake.now += 1.0
    assert (publish.take_stats().bitrate_kbps, publish.take_stats().fps) == (0.0, 0.0)


async def test_keyframe_interval_is_measured_on_media_time_across_windows() -> None:
    fake = FakeClock()
    publish = session(clock=fake)
    await publish.on_media(video(0, video_tag(0, AVC_CONFIG)))
    # A 2 s GOP at 30 fps, read in 1.5 s windows: most windows hold one keyframe or none.
    figures = []
    for i in range(240):
        await publish.on_media(video(i * 33, video_tag(1, b"x" * 50, keyframe=i % 60 == 0)))
        if i % 45 == 44:
            fake.now += 1.5
            figures.append(publish.take_stats().keyframe_interval_s)
    assert figures[0] == 0.0  # only the first keyframe so far
    assert figures[-1] == pytest.approx(60 * 0.033)
    assert all(value == 0.0 or value == pytest.approx(1.98) for value in figures)


@pytest.mark.parametrize("start", [0xFFFFFF - 1_000, (1 << 32) - 1_000], ids=["2^24", "2^32"])
async def test_long_streams_reach_the_sink_in_order(start: int) -> None:
    """pyrtmp (b) end to end: a publisher 4 h 40 min in, and one 49.7 days in.

    Multi-chunk video (extended timestamps repeated on every continuation chunk) and
    type-3 audio, through the connection, the session and its clock, to the sink.
    """
    conn = RTMPConnection(random_bytes=det_random)
    client = Publisher()
    conn.receive_data(digest_c0c1())
    conn.next_event()
    s012 = conn.data_to_send()
    wire = bytearray(c2_for(s012) + client.connect() + client.publish_setup("k"))
    wire += client.media(VIDEO, start - 100, video_tag(0, AVC_CONFIG))
    wire += client.media(AUDIO, start - 100, audio_tag(0, ASC_FFMPEG))
    expected_video, expected_audio = [], []
    for i in range(90):
        ts = start + i * 23
        wire += client.media(AUDIO, ts, audio_tag(1, b"\x21\x10\x04\x60\x8c\x1c"))
        expected_audio.append(ts)
        if i % 3 == 0:
            wire += client.media(VIDEO, ts + 3, video_tag(1, bytes(600), keyframe=i == 0))
            expected_video.append(ts + 3)
    events = drive(conn, [bytes(wire[i : i + 1000]) for i in range(0, len(wire), 1000)])
    sink = RecordingSink()
    publish = session(sink)
    for event in events:
        if isinstance(event, MediaMessage):
            await publish.on_media(event)
    assert [call[1] for call in sink.of("video")] == expected_video
    assert [call[1] for call in sink.of("audio")] == expected_audio
    assert max(expected_audio) > start + 1_000  # past 2^24, or past 2^32 (unwrapped)
