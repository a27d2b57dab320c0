"""Fuzzing the sans-IO core (h11's harness shape): any bytes → events or ProtocolError.

Inputs are the committed corpus (``corpus/seeds``: sessions built by ``seeds.py``;
``corpus/crashers``: inputs that once broke the core, kept as regressions) plus the
captured ffmpeg session, mutated by a fixed-seed ``random.Random`` — no hypothesis,
no atheris: the same inputs every run, bounded in number, seconds in CI.

Each input is fed in random pieces to a fresh :class:`RTMPConnection`; decisions are
answered (mostly accepted, so mutations reach the publishing state) and every media
and metadata event goes through the FLV parsers and a :class:`PublishSession`. The only
exception allowed out is :class:`ProtocolError`. A failing input is written under the
test's ``tmp_path`` with instructions to commit it to ``corpus/crashers``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ingest.flv import (
    AudioSpecificConfig,
    AudioTagHeader,
    AVCDecoderConfigurationRecord,
    VideoTagHeader,
)
from ingest.media import NullSink
from ingest.rtmp import amf0
from ingest.rtmp.connection import RTMPConnection
from ingest.rtmp.errors import ProtocolError
from ingest.rtmp.events import (
    Closed,
    ConnectRequested,
    MediaMessage,
    MetaData,
    NeedData,
    PublishRequested,
)
from ingest.rtmp.handshake import HANDSHAKE_SIZE
from ingest.rtmp.limits import Limits
from ingest.session import PublishSession
from tests.unit.rtmp_peer import FIXTURES, det_random

pytestmark = pytest.mark.unit

CORPUS = Path(__file__).parent / "corpus"
SEED = 20240522
ITERATIONS = 20_000
# Small limits, so mutated lengths hit them often.
LIMITS = Limits(
    max_video_message=64 * 1024,
    max_audio_message=8 * 1024,
    max_command_message=16 * 1024,
    max_buffered_bytes=256 * 1024,
    max_chunk_streams=16,
    max_streams=4,
)
HANDSHAKE_BYTES = 1 + 2 * HANDSHAKE_SIZE
INTERESTING = (
    b"\x00",
    b"\xff",
    b"\x7f",
    b"\x80",
    b"\x03",
    b"\xc3",
    b"\x43",
    b"\x02",
    b"\x01",
    b"\x11",
    b"\x09",
    b"\x0a",
    b"\xff\xff\xff",
    b"\x00\x00\x00\x00",
    b"\xff\xff\xff\xff",
    b"\x7f\xff\xff\xff",
    b"\x00\x00\x00\x01",
)


def seeds() -> list[bytes]:
    built = [path.read_bytes() for path in sorted((CORPUS / "seeds").glob("*.bin"))]
    # The first 12 KB of the capture: connect, publish, metadata, the first frames.
    return [*built, (FIXTURES / "ffmpeg_silent_6s.bin").read_bytes()[:12_000]]


def crashers() -> list[bytes]:
    return [path.read_bytes() for path in sorted((CORPUS / "crashers").glob("*.bin"))]


def corpus() -> list[bytes]:
    return [*seeds(), *crashers()]


def mutate(data: bytes, rng: random.Random, others: list[bytes]) -> bytes:
    buf = bytearray(data)
    # Mostly past the handshake: mutating it just ends the connection early.
    low = HANDSHAKE_BYTES if len(buf) > HANDSHAKE_BYTES and rng.random() < 0.9 else 0

    def spot() -> int:
        return rng.randrange(low, max(low + 1, len(buf)))

    for _ in range(rng.choice((1, 1, 2, 3, 8))):
        choice = rng.randrange(8)
        if choice == 0 and buf:
            at = spot()
            if at < len(buf):
                buf[at] ^= 1 << rng.randrange(8)
        elif choice == 1 and buf:
            at = spot()
            buf[at : at + 1] = bytes((rng.randrange(256),))
        elif choice == 2:
            at = spot()
            value = rng.choice(INTERESTING)
            buf[at : at + len(value)] = value
        elif choice == 3:
            buf[spot() : spot()] = rng.randbytes(rng.randrange(1, 16))
        elif choice == 4 and len(buf) > low + 1:
            start = spot()
            del buf[start : start + rng.randrange(1, 64)]
        elif choice == 5 and len(buf) > low + 1:
            start = spot()
            piece = buf[start : start + rng.randrange(1, 256)]
            at = spot()
            buf[at:at] = piece
        elif choice == 6:
            del buf[spot() :]
        else:
            other = rng.choice(others)
            start = rng.randrange(len(other))
            buf[spot() :] = other[start : start + rng.randrange(1, 2048)]
    return bytes(buf)


def split(data: bytes, rng: random.Random) -> list[bytes]:
    """TCP reads of any size; small ones now and then to cut headers apart."""
    if rng.random() < 0.4:
        return [data]
    pieces, at = [], 0
    while at < len(data):
        size = rng.choice((3, 7, 64, 1000, 1000, 4096, 65536))
        pieces.append(data[at : at + size])
        at += size
    return pieces


class _Quiet:
    """Stands in for the session's logger: formatting log lines would dominate the run."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


@pytest.fixture(autouse=True)
def _quiet_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ingest.session.log", _Quiet())


async def run_one(data: bytes, rng: random.Random, *, accept_all: bool = False) -> bool:
    """Feed ``data``; True if it ended cleanly, False on ProtocolError; anything else raises."""
    conn = RTMPConnection(LIMITS, random_bytes=det_random)
    session = PublishSession(NullSink(), stream_id="s", session_id="x", user_id="u")
    try:
        for piece in [*split(data, rng), b""]:
            conn.receive_data(piece)
            while True:
                event = conn.next_event()
                conn.data_to_send()
                if isinstance(event, NeedData):
                    break
                if isinstance(event, Closed):
                    return True
                if isinstance(event, ConnectRequested):
                    if accept_all or rng.random() < 0.95:
                        conn.accept_connect()
                    else:
                        conn.reject_connect("fuzz")
                elif isinstance(event, PublishRequested):
                    if accept_all or rng.random() < 0.9:
                        conn.accept_publish()
                    else:
                        conn.reject_publish("NetStream.Publish.BadName", "fuzz")
                elif isinstance(event, MediaMessage):
                    try:
                        await session.on_media(event)
                    except ProtocolError:
                        conn.send_status(event.stream_id, "error", "x", "y")
                elif isinstance(event, MetaData):
                    await session.on_metadata(event.values)
    except ProtocolError:
        return False
    return True  # pragma: no cover - the final b"" always yields Closed


def _record_failure(tmp_path: Path, data: bytes, index: int) -> str:
    path = tmp_path / f"crasher-{index}.bin"
    path.write_bytes(data)
    return f"input #{index} raised; saved to {path}: copy it to {CORPUS / 'crashers'}"


async def test_the_seeds_are_clean_sessions() -> None:
    """Mutations start from valid sessions that reach the publishing state."""
    for data in seeds():
        assert await run_one(data, random.Random(0), accept_all=True), "a seed must be valid"


@pytest.mark.timeout(240)
async def test_the_core_yields_events_or_protocol_error(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    inputs = corpus()
    started = time.monotonic()
    clean = 0
    for index in range(ITERATIONS):
        # Each corpus entry once as it is, then mutations.
        data = inputs[index] if index < len(inputs) else mutate(rng.choice(inputs), rng, inputs)
        try:
            clean += await run_one(data, random.Random(index))
        except Exception as exc:
            raise AssertionError(_record_failure(tmp_path, data, index)) from exc
        if index % 500 == 0:
            await asyncio.sleep(0)
    elapsed = time.monotonic() - started
    # Both outcomes must be common, or the mutations are too gentle or too wild.
    assert 0.05 * ITERATIONS < clean < 0.95 * ITERATIONS
    print(f"{ITERATIONS} inputs in {elapsed:.1f} s, {clean} ended cleanly")


def _parsers() -> list[Callable[[bytes], object]]:
    return [
        amf0.decode_all,
        VideoTagHeader.parse,
        AudioTagHeader.parse,
        AVCDecoderConfigurationRecord.parse,
        AudioSpecificConfig.parse,
    ]


def test_the_wire_parsers_raise_only_protocol_error() -> None:
    rng = random.Random(SEED + 1)
    payloads = [
        amf0.encode_all("connect", 1.0, {"app": "live", "nested": [1.0, {"x": None}]}),
        amf0.encode_all("onMetaData", amf0.ECMAArray({"width": 320.0, "encoder": "obs"})),
        bytes.fromhex("17000000000142c00affe100166742c00ada109b0110000003001000000301"),
        bytes.fromhex("af00121056e500"),
    ]
    for index in range(10_000):
        data = mutate(rng.choice(payloads), rng, payloads) if index else b""
        for parse in _parsers():
            try:
                parse(data)
            except ProtocolError:
                pass
            except Exception as exc:
                raise AssertionError(f"{parse.__qualname__}({data.hex()}) raised {exc!r}") from exc
