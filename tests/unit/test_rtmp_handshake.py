"""The handshake (RTMP 5.2): plain and digest variants, checked the way clients check them."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.rtmp.connection import RTMPConnection, State
from ingest.rtmp.errors import ProtocolError
from ingest.rtmp.events import HandshakeCompleted, NeedData
from ingest.rtmp.handshake import (
    CLIENT_KEY,
    HANDSHAKE_SIZE,
    SERVER_KEY,
    SERVER_KEY_PARTIAL,
    SERVER_VERSION,
    HandshakePacket,
    ServerHandshake,
    check_c0,
    digest_offset,
    find_client_digest,
    packet_digest,
)
from ingest.rtmp.limits import Limits
from tests.unit.rtmp_peer import det_random, digest_c0c1, hmac_sha256, plain_c0c1

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).parent / "fixtures" / "rtmp"


def test_packet_round_trip() -> None:
    raw = plain_c0c1(time=1234)[1:]
    packet = HandshakePacket.parse(raw)
    assert (packet.time, packet.version) == (1234, b"\x00\x00\x00\x00")
    assert bytes(packet) == raw


def test_packet_size_is_checked() -> None:
    with pytest.raises(ProtocolError) as caught:
        HandshakePacket.parse(b"\x00" * 100)
    assert str(caught.value) == "handshake: packet is 100 bytes, expected 1536 (5.2.3)"


def test_plain_handshake_echoes_c1_in_s2() -> None:
    handshake = ServerHandshake(random_bytes=det_random)
    c0c1 = plain_c0c1()
    reply = handshake.respond(c0c1)
    s0, s1, s2 = reply[:1], reply[1 : 1 + HANDSHAKE_SIZE], reply[1 + HANDSHAKE_SIZE :]
    assert s0 == b"\x03"
    assert s1[:8] == b"\x00" * 8  # 5.2.3: time 0, zero
    assert s2 == c0c1[1:]  # 5.2.4: S2 echoes C1
    assert not handshake.digest_variant
    assert handshake.check_c2(s1) is True


@pytest.mark.parametrize("base", [8, 772])
def test_digest_handshake_answers_like_flash_media_server(base: int) -> None:
    c0c1 = digest_c0c1(base)
    found = find_client_digest(c0c1[1:])
    assert found is not None
    assert found[0] == base
    client_digest = found[1]

    handshake = ServerHandshake(random_bytes=det_random)
    reply = handshake.respond(c0c1)
    s1, s2 = reply[1 : 1 + HANDSHAKE_SIZE], reply[1 + HANDSHAKE_SIZE :]
    assert handshake.digest_variant
    assert s1[4:8] == SERVER_VERSION
    # A player verifies S1's digest with the server's partial key, in the same schema…
    offset = digest_offset(s1, base)
    assert packet_digest(s1, offset, SERVER_KEY_PARTIAL) == s1[offset : offset + 32]
    # …and S2 the way ffmpeg's rtmp_handshake does: HMAC(HMAC(server key, C1 digest)).
    key = hmac_sha256(SERVER_KEY, client_digest)
    assert hmac_sha256(key, s2[: HANDSHAKE_SIZE - 32]) == s2[HANDSHAKE_SIZE - 32 :]

    # C2 either echoes S1 (ffmpeg and OBS when publishing) or answers S1's digest.
    assert handshake.check_c2(s1)
    s1_digest = s1[offset : offset + 32]
    c2_random = det_random(HANDSHAKE_SIZE - 32)
    c2_key = hmac_sha256(CLIENT_KEY, s1_digest)
    assert handshake.check_c2(c2_random + hmac_sha256(c2_key, c2_random))
    assert not handshake.check_c2(c2_random + b"\x00" * 32)


def test_a_version_without_a_valid_digest_is_plain() -> None:
    c0c1 = bytearray(digest_c0c1())
    offset = digest_offset(bytes(c0c1[1:]), 8)
    c0c1[1 + offset] ^= 0xFF  # a version field, but the digest no longer verifies
    assert find_client_digest(bytes(c0c1[1:])) is None
    handshake = ServerHandshake(random_bytes=det_random)
    handshake.respond(bytes(c0c1))
    assert not handshake.digest_variant


def test_ffmpeg_sends_the_digest_variant() -> None:
    captured = (FIXTURES / "ffmpeg_silent_6s.bin").read_bytes()
    assert captured[0] == 3
    found = find_client_digest(captured[1 : 1 + HANDSHAKE_SIZE])
    assert found is not None
    assert found[0] == 8  # ffmpeg's rtmp_handshake_imprint_with_digest, unencrypted


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (6, "handshake: RTMPE (C0 version 6) is not supported; use rtmp://"),
        (ord("G"), "handshake: C0 version 71 looks like HTTP; this is an RTMP port"),
        (2, "handshake: unsupported RTMP version 2 in C0 (expected 3)"),
        (255, "handshake: unsupported RTMP version 255 in C0 (expected 3)"),
    ],
)
def test_wrong_c0_versions_are_refused_at_once(version: int, message: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        check_c0(version)
    assert str(caught.value) == message
    conn = RTMPConnection()
    conn.receive_data(bytes((version,)))  # one byte is enough to refuse
    with pytest.raises(ProtocolError) as caught:
        conn.next_event()
    assert str(caught.value) == message
    assert conn.state is State.ERROR


def test_truncated_c1_waits_for_more() -> None:
    conn = RTMPConnection()
    conn.receive_data(plain_c0c1()[:1000])
    assert isinstance(conn.next_event(), NeedData)
    assert conn.data_to_send() == b""
    assert conn.state is State.HANDSHAKE  # the transport's handshake timeout ends it


def test_c2_mismatch_is_reported_by_default_and_fatal_when_strict() -> None:
    conn = RTMPConnection(random_bytes=det_random)
    conn.receive_data(plain_c0c1() + b"\x00" * HANDSHAKE_SIZE)
    assert conn.next_event() == HandshakeCompleted(digest=False, c2_verified=False)

    strict = RTMPConnection(Limits(verify_c2=True), random_bytes=det_random)
    strict.receive_data(plain_c0c1() + b"\x00" * HANDSHAKE_SIZE)
    with pytest.raises(ProtocolError) as caught:
        strict.next_event()
    assert str(caught.value) == "handshake: C2 echoes neither S1 nor its digest (5.2.4)"


def test_the_handshake_byte_by_byte() -> None:
    conn = RTMPConnection(random_bytes=det_random)
    c0c1 = digest_c0c1()
    for byte in c0c1:
        conn.receive_data(bytes((byte,)))
        assert isinstance(conn.next_event(), NeedData)
    s012 = conn.data_to_send()
    assert len(s012) == 1 + 2 * HANDSHAKE_SIZE
    c2 = s012[1 : 1 + HANDSHAKE_SIZE]
    for byte in c2[:-1]:
        conn.receive_data(bytes((byte,)))
        assert isinstance(conn.next_event(), NeedData)
    conn.receive_data(c2[-1:])
    assert conn.next_event() == HandshakeCompleted(digest=True, c2_verified=True)
    assert conn.state is State.AWAIT_CONNECT
