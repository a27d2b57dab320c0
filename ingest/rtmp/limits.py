"""What one RTMP connection may cost us, in bytes and counts (time limits live in the server).

Every limit names the rule or the incident behind it. Section numbers are Adobe's RTMP
specification 1.0; "RELIABILITY.md" is ``../shared/RELIABILITY.md`` ("RTMP ingest").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ingest.rtmp.messages import MessageType

__all__ = ["DEFAULT_LIMITS", "Limits"]

KIB: Final = 1024
MIB: Final = 1024 * KIB

_CONTROL_TYPES: Final = frozenset(
    {
        MessageType.SET_CHUNK_SIZE,
        MessageType.ABORT,
        MessageType.ACKNOWLEDGEMENT,
        MessageType.USER_CONTROL,
        MessageType.WINDOW_ACK_SIZE,
        MessageType.SET_PEER_BANDWIDTH,
    }
)
_COMMAND_TYPES: Final = frozenset(
    {
        MessageType.DATA_AMF0,
        MessageType.DATA_AMF3,
        MessageType.COMMAND_AMF0,
        MessageType.COMMAND_AMF3,
        MessageType.SHARED_OBJECT_AMF0,
        MessageType.SHARED_OBJECT_AMF3,
    }
)


@dataclass(frozen=True, slots=True)
class Limits:
    # Message sizes, checked against the length a chunk header *declares* (5.3.1.2.1),
    # before a single payload byte is stored: the 3-byte length field allows 16 MiB-1,
    # and a header declaring that with no body must not allocate it (RELIABILITY.md).
    # A 4K keyframe at high bitrate is 2-4 MB; 8 MiB leaves room (nginx-rtmp's
    # max_message defaults to 1 MB, which cuts off such keyframes).
    max_video_message: int = 8 * MIB
    # AAC/MP3 frames are a few KB; 1 MiB is far above any audio frame.
    max_audio_message: int = 1 * MIB
    # 7.1.1-7.1.3: connect, publish and onMetaData are hundreds of bytes.
    max_command_message: int = 256 * KIB
    # 5.4 / 7.1.7: protocol and user control payloads are 4 to 10 bytes.
    max_control_message: int = 64
    # Aggregates (7.1.6) carry several audio/video messages.
    max_aggregate_message: int = 8 * MIB
    # Types the spec does not define are read and dropped; keep them small.
    max_other_message: int = 64 * KIB
    # Chunks of different chunk streams interleave (5.3.1), so a peer can hold many
    # messages half-sent at once. This caps the sum of unfinished message bytes plus
    # unparsed input per connection: one maximal video message plus room for the
    # audio and the next read. 62 interleaved partial messages stay under it.
    max_buffered_bytes: int = 12 * MIB
    # Distinct chunk stream ids per connection. The id space is 2..65599 (5.3.1.1);
    # publishers use 3-8. nginx-rtmp's max_streams defaults to 32.
    max_chunk_streams: int = 64
    # createStream (7.2.1.3) allocations alive at once; OBS and ffmpeg use one.
    max_streams: int = 8
    # 5.2.4: C2 MUST echo S1. nginx-rtmp and SRS never check it and some encoders get it
    # wrong, so by default a mismatch is reported in HandshakeCompleted, not fatal.
    verify_c2: bool = False

    def max_message(self, type_id: int) -> int:
        if type_id == MessageType.VIDEO:
            return self.max_video_message
        if type_id == MessageType.AUDIO:
            return self.max_audio_message
        if type_id in _COMMAND_TYPES:
            return self.max_command_message
        if type_id in _CONTROL_TYPES:
            return self.max_control_message
        if type_id == MessageType.AGGREGATE:
            return self.max_aggregate_message
        return self.max_other_message


DEFAULT_LIMITS: Final = Limits()
