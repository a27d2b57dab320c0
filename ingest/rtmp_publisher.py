"""A small asyncio RTMP *publisher* (client), built on the server's own wire code.

What ffmpeg and OBS do, in order (RTMP spec 1.0, sections in brackets): the plain
handshake [5.2]; Set Chunk Size [5.4.1]; ``connect`` to the application [7.2.1.1];
``releaseStream``, ``FCPublish``, ``createStream`` [7.2.1.3]; ``publish`` [7.2.2.6],
answered by ``onStatus`` ``NetStream.Publish.Start`` (or an error: a refused key is
``NetStream.Publish.BadName``, which we raise as :class:`PublishRefusedError` with the
server's description); ``@setDataFrame onMetaData``; the AVC and AAC sequence headers;
then audio and video messages [7.1.4, 7.1.5] whose bodies are FLV tag bodies
(:mod:`ingest.flv`). Chunks are written by :class:`~ingest.rtmp.chunks.ChunkWriter` and
replies read by :class:`~ingest.rtmp.chunks.ChunkReader`: the same code the server runs.

A reader task drains what the server sends while we publish; the server closing the
connection (a stop request, a shutdown) ends :meth:`RTMPPublisher.send` with
:class:`PublisherClosedError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from ingest.flv import (
    AACPacketType,
    AudioTagHeader,
    AVCPacketType,
    FrameType,
    SoundFormat,
    VideoCodec,
    VideoTagHeader,
)
from ingest.rtmp import amf0
from ingest.rtmp.chunks import ChunkReader, ChunkWriter
from ingest.rtmp.errors import ProtocolError
from ingest.rtmp.handshake import HANDSHAKE_SIZE
from ingest.rtmp.limits import Limits
from ingest.rtmp.messages import Command, DataMessage, Message, MessageType, SetChunkSize

__all__ = [
    "PublishRefusedError",
    "PublisherClosedError",
    "PublisherError",
    "RTMPPublisher",
    "RTMPTarget",
]

DEFAULT_PORT: Final = 1935
CHUNK_SIZE: Final = 4096  # what ffmpeg uses; 128-byte chunks cost 30x the headers
# Chunk stream ids as ffmpeg uses them: commands 3, audio 4, video and data 6, publish 8.
CSID_CONTROL: Final = 2
CSID_COMMAND: Final = 3
CSID_AUDIO: Final = 4
CSID_VIDEO: Final = 6
CSID_PUBLISH: Final = 8
REPLY_TIMEOUT_S: Final = 10.0


class PublisherError(Exception):
    """Anything that ends a publish: the message is meant for a person."""


class PublishRefusedError(PublisherError):
    """The server answered ``publish`` (or ``connect``) with an error status."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code}: {description}" if description else code)
        self.code = code
        self.description = description


class PublisherClosedError(PublisherError):
    """The server closed the connection while we were publishing."""


@dataclass(frozen=True, slots=True)
class RTMPTarget:
    """``rtmp://host[:port]/app/stream_key`` split into its parts."""

    host: str
    port: int
    app: str
    key: str

    @classmethod
    def parse(cls, url: str) -> RTMPTarget:
        parts = urlsplit(url)
        if parts.scheme != "rtmp" or not parts.hostname:
            raise ValueError(f"{url!r}: not an rtmp://host/app/key URL")
        app, _, key = parts.path.strip("/").partition("/")
        if not app or not key:
            raise ValueError(f"{url!r}: needs an application and a stream key (/live/KEY)")
        return cls(parts.hostname, parts.port or DEFAULT_PORT, app, key)

    @property
    def tc_url(self) -> str:
        return f"rtmp://{self.host}:{self.port}/{self.app}"


class RTMPPublisher:
    """One publish: ``await connect()``, ``send_*`` in timestamp order, ``await close()``."""

    def __init__(self, target: RTMPTarget) -> None:
        self.target = target
        self._writer_chunks = ChunkWriter()
        self._reader_chunks = ChunkReader(Limits(max_buffered_bytes=1 << 24))
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._replies: asyncio.Queue[Command | None] = asyncio.Queue()
        self._drain_task: asyncio.Task[None] | None = None
        self._tid = 0.0
        self._stream_id = 0
        self.closed_by_server = asyncio.Event()
        self.bytes_sent = 0

    # --- setup -------------------------------------------------------------------------

    async def connect(self, *, timeout_s: float = REPLY_TIMEOUT_S) -> None:
        """Handshake, connect, createStream, publish; raises on any refusal."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._open()
        except TimeoutError:
            await self.abort()
            raise PublisherError(
                f"rtmp://{self.target.host}:{self.target.port}: no answer in {timeout_s:.0f} s"
            ) from None
        except BaseException:
            await self.abort()
            raise

    async def _open(self) -> None:
        target = self.target
        try:
            self._reader, self._writer = await asyncio.open_connection(target.host, target.port)
        except OSError as exc:
            # asyncio words a refusal "Connect call failed ('127.0.0.1', 1935)".
            reason = "connection refused" if isinstance(exc, ConnectionRefusedError) else None
            raise PublisherError(
                f"cannot reach the RTMP server at {target.host}:{target.port} "
                f"({reason or exc.strerror or exc})"
            ) from None
        await self._handshake()
        self._drain_task = asyncio.create_task(self._read_forever(), name="rtmp-publisher-read")
        self._write(
            self._writer_chunks.write(
                CSID_CONTROL, MessageType.SET_CHUNK_SIZE, 0, 0, bytes(SetChunkSize(CHUNK_SIZE))
            )
        )
        self._writer_chunks.chunk_size = CHUNK_SIZE
        info: dict[str, amf0.AMF0Value] = {
            "app": target.app,
            "type": "nonprivate",
            "flashVer": "FMLE/3.0 (compatible; VideoPick demo)",
            "tcUrl": target.tc_url,
        }
        connected = await self._call("connect", info)
        if connected.name != "_result":
            raise PublishRefusedError(*_status_of(connected, "NetConnection.Connect.Rejected"))
        self._command("releaseStream", None, target.key)
        self._command("FCPublish", None, target.key)
        created = await self._call("createStream", None)
        if created.name != "_result" or not created.arguments:
            raise PublisherError(f"createStream refused: {created}")
        stream_id = created.arguments[0]
        if not isinstance(stream_id, float):
            raise PublisherError(f"createStream answered a stream id of {stream_id!r}")
        self._stream_id = int(stream_id)
        self._command("publish", None, target.key, "live", csid=CSID_PUBLISH)
        code, description = await self._publish_status()
        if code != "NetStream.Publish.Start":
            raise PublishRefusedError(code, description)

    async def _handshake(self) -> None:
        """5.2.5: C0+C1 out, S0+S1+S2 in, C2 (an echo of S1) out. Plain, no digest."""
        assert self._reader is not None
        c1 = struct.pack(">I", 0) + bytes(4) + os.urandom(HANDSHAKE_SIZE - 8)
        self._write(b"\x03" + c1)
        try:
            s012 = await self._reader.readexactly(1 + 2 * HANDSHAKE_SIZE)
        except asyncio.IncompleteReadError:
            raise PublisherError("the RTMP server closed the connection in the handshake") from None
        if s012[0] != 3:
            raise PublisherError(f"the RTMP server answered version {s012[0]}, expected 3")
        self._write(s012[1 : 1 + HANDSHAKE_SIZE])

    async def _publish_status(self) -> tuple[str, str]:
        # 7.2.2.6: the answer to publish is an onStatus on the new stream.
        while True:
            reply = await self._next_reply()
            if reply.name == "onStatus":
                return _status_of(reply, "NetStream.Publish.Failed")
            if reply.name == "_error":
                return _status_of(reply, "NetStream.Publish.Failed")

    # --- media -------------------------------------------------------------------------

    def send_metadata(self, values: dict[str, amf0.AMF0Value]) -> None:
        payload = bytes(DataMessage("@setDataFrame", ("onMetaData", amf0.ECMAArray(values))))
        self._media(CSID_VIDEO, MessageType.DATA_AMF0, 0, payload)

    def send_video_config(self, avc_config: bytes) -> None:
        header = VideoTagHeader(FrameType.KEY, VideoCodec.AVC, AVCPacketType.SEQUENCE_HEADER)
        self._media(CSID_VIDEO, MessageType.VIDEO, 0, bytes(header) + avc_config)

    def send_audio_config(self, audio_specific_config: bytes) -> None:
        header = AudioTagHeader(SoundFormat.AAC, packet_type=AACPacketType.SEQUENCE_HEADER)
        self._media(CSID_AUDIO, MessageType.AUDIO, 0, bytes(header) + audio_specific_config)

    def send_video(self, dts_ms: int, pts_ms: int, keyframe: bool, avcc: bytes) -> None:
        frame_type = FrameType.KEY if keyframe else FrameType.INTER
        header = VideoTagHeader(frame_type, VideoCodec.AVC, AVCPacketType.NALU, pts_ms - dts_ms)
        self._media(CSID_VIDEO, MessageType.VIDEO, dts_ms, bytes(header) + avcc)

    def send_audio(self, dts_ms: int, aac_frame: bytes) -> None:
        header = AudioTagHeader(SoundFormat.AAC, packet_type=AACPacketType.RAW)
        self._media(CSID_AUDIO, MessageType.AUDIO, dts_ms, bytes(header) + aac_frame)

    async def drain(self) -> None:
        """Wait until the socket takes what we queued (back-pressure)."""
        if self.closed_by_server.is_set():
            raise PublisherClosedError("the RTMP server closed the connection")
        assert self._writer is not None
        try:
            await self._writer.drain()
        except ConnectionError as exc:
            raise PublisherClosedError(f"the RTMP connection broke ({exc})") from None

    def _media(self, csid: int, type_id: int, timestamp: int, payload: bytes) -> None:
        if self.closed_by_server.is_set():
            raise PublisherClosedError("the RTMP server closed the connection")
        self._write(self._writer_chunks.write(csid, type_id, self._stream_id, timestamp, payload))

    # --- the end -------------------------------------------------------------------------

    async def close(self, *, timeout_s: float = 3.0) -> None:
        """FCUnpublish and deleteStream (what ffmpeg sends at the end), then hang up."""
        if self._writer is not None and not self.closed_by_server.is_set():
            with contextlib.suppress(ConnectionError, PublisherError):
                self._command("FCUnpublish", None, self.target.key)
                self._command("deleteStream", None, float(self._stream_id))
                async with asyncio.timeout(timeout_s):
                    await self._writer.drain()
        await self.abort()

    async def abort(self) -> None:
        """Hang up now."""
        if self._drain_task is not None:
            self._drain_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain_task
            self._drain_task = None
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._writer.wait_closed()
            self._writer = None

    # --- plumbing ------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(data)
        self.bytes_sent += len(data)

    def _command(
        self, name: str, obj: amf0.AMF0Value, *args: amf0.AMF0Value, csid: int = CSID_COMMAND
    ) -> float:
        self._tid += 1
        stream_id = self._stream_id if name in ("publish", "deleteStream") else 0
        payload = bytes(Command(name, self._tid, obj, args))
        self._write(
            self._writer_chunks.write(csid, MessageType.COMMAND_AMF0, stream_id, 0, payload)
        )
        return self._tid

    async def _call(self, name: str, obj: amf0.AMF0Value, *args: amf0.AMF0Value) -> Command:
        tid = self._command(name, obj, *args)
        while True:
            reply = await self._next_reply()
            if reply.name in ("_result", "_error") and reply.transaction_id == tid:
                return reply

    async def _next_reply(self) -> Command:
        reply = await self._replies.get()
        if reply is None:
            raise PublisherClosedError("the RTMP server closed the connection")
        return reply

    async def _read_forever(self) -> None:
        """Parse what the server sends; commands go to the queue, the rest is dropped."""
        assert self._reader is not None
        try:
            while data := await self._reader.read(64 * 1024):
                self._reader_chunks.receive(data)
                while (message := self._reader_chunks.next_message()) is not None:
                    self._on_message(message)
        except (ConnectionError, ProtocolError):
            pass
        finally:
            self.closed_by_server.set()
            self._replies.put_nowait(None)

    def _on_message(self, message: Message) -> None:
        if message.type_id == MessageType.SET_CHUNK_SIZE:
            self._reader_chunks.set_chunk_size(SetChunkSize.parse(message.payload).size)
        elif message.type_id == MessageType.COMMAND_AMF0:
            self._replies.put_nowait(Command.parse(message.payload))


def _status_of(reply: Command, default_code: str) -> tuple[str, str]:
    """7.2.2: the info object of ``onStatus`` / ``_error``: its code and description."""
    for value in (*reply.arguments, reply.command_object):
        if isinstance(value, dict):
            code = value.get("code")
            description = value.get("description")
            return (
                code if isinstance(code, str) else default_code,
                description if isinstance(description, str) else "",
            )
    return default_code, ""
