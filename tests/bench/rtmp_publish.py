"""A light asyncio RTMP publisher for the live benchmarks, on the project's own framing.

It speaks the client side with :class:`tests.unit.rtmp_peer.Publisher` (the production
:class:`~ingest.rtmp.chunks.ChunkWriter` underneath): plain handshake, connect,
releaseStream/FCPublish/createStream, publish, then FLV tags as RTMP messages. Waiting
for each answer, as ffmpeg does, so nginx-rtmp and our ingest see the same dialogue.

Media bytes are chunked once by :func:`chunk_tags` and the same bytes go to every
connection (each starts its media chunk streams fresh with the same chunk size and
stream id 1), so N publishers cost N socket writes, not N chunkers.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from ingest.packager.flvfile import FlvTag
from ingest.rtmp.chunks import ChunkWriter
from ingest.rtmp.handshake import HANDSHAKE_SIZE
from ingest.rtmp.messages import Command, MessageType
from tests.unit.rtmp_peer import (
    CSID_AUDIO,
    CSID_DATA,
    CSID_VIDEO,
    Publisher,
    ServerReplies,
    plain_c0c1,
)

CHUNK_SIZE = 4096
STREAM_ID = 1  # what the first createStream gets, from nginx-rtmp and from our core
FLV_AUDIO, FLV_VIDEO, FLV_SCRIPT = 8, 9, 18
SETUP_TIMEOUT_S = 15.0


class PublishRefusedError(RuntimeError):
    pass


def _amf0_string(text: str) -> bytes:
    raw = text.encode()
    return b"\x02" + struct.pack(">H", len(raw)) + raw


def message_for(tag: FlvTag) -> tuple[int, int, bytes]:
    """(chunk stream id, RTMP message type, payload) for one FLV tag."""
    if tag.kind == FLV_VIDEO:
        return CSID_VIDEO, MessageType.VIDEO, tag.body
    if tag.kind == FLV_AUDIO:
        return CSID_AUDIO, MessageType.AUDIO, tag.body
    # An FLV script tag is onMetaData; a publisher sends it behind "@setDataFrame".
    return CSID_DATA, MessageType.DATA_AMF0, _amf0_string("@setDataFrame") + tag.body


def chunk_tags(tags: Iterable[FlvTag]) -> list[bytes]:
    """Each tag as the bytes a fresh publishing connection sends for it."""
    writer = ChunkWriter(CHUNK_SIZE)
    out = []
    for tag in tags:
        csid, type_id, payload = message_for(tag)
        out.append(writer.write(csid, type_id, STREAM_ID, tag.timestamp_ms, payload))
    return out


@dataclass
class RtmpPublisher:
    """One publishing connection; ``write`` sends pre-chunked media bytes."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    drain_task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, host: str, port: int, app: str, key: str) -> RtmpPublisher:
        reader, writer = await asyncio.open_connection(host, port)
        self = cls(reader, writer)
        try:
            async with asyncio.timeout(SETUP_TIMEOUT_S):
                await self._setup(app, key)
        except BaseException:
            writer.close()
            raise
        self.drain_task = asyncio.create_task(self._discard_replies())
        return self

    async def _setup(self, app: str, key: str) -> None:
        self.writer.write(plain_c0c1())
        s0s1s2 = await self.reader.readexactly(1 + 2 * HANDSHAKE_SIZE)
        self.writer.write(s0s1s2[1 : 1 + HANDSHAKE_SIZE])  # C2 echoes S1
        replies = ServerReplies(handshake_done=True)
        peer = Publisher()
        self.writer.write(peer.set_chunk_size(CHUNK_SIZE) + peer.connect(app))
        await self._answer(replies, "_result")
        self.writer.write(
            peer.command("releaseStream", None, key)
            + peer.command("FCPublish", None, key)
            + peer.command("createStream", None)
        )
        created = await self._answer(replies, "_result", lambda c: c.transaction_id == peer.tid)
        if created.arguments != (float(STREAM_ID),):
            raise PublishRefusedError(f"createStream answered {created.arguments}")
        self.writer.write(peer.command("publish", None, key, "live", stream_id=STREAM_ID, csid=8))
        status = await self._answer(replies, "onStatus")
        code = status.arguments[0].get("code") if status.arguments else None  # type: ignore[union-attr]
        if code != "NetStream.Publish.Start":
            raise PublishRefusedError(f"publish refused: {code}")

    async def _answer(self, replies: ServerReplies, name: str, accept: object = None) -> Command:
        seen = len(replies.commands())
        while True:
            commands = replies.commands()[seen:]
            for command in commands:
                if command.name == "_error":
                    raise PublishRefusedError(f"server answered _error: {command.arguments}")
                if command.name == name and (accept is None or accept(command)):  # type: ignore[operator]
                    return command
            data = await self.reader.read(65536)
            if not data:
                raise PublishRefusedError(f"connection closed while waiting for {name}")
            replies.feed(data)

    async def _discard_replies(self) -> None:
        # Acknowledgements and pings: read so the server never blocks on a full socket.
        with contextlib.suppress(OSError):
            while await self.reader.read(65536):
                pass

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()

    @property
    def closed(self) -> bool:
        return self.writer.is_closing() or (self.drain_task is not None and self.drain_task.done())

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()
        if self.drain_task is not None:
            self.drain_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.drain_task


async def read_flv_tags(stream: asyncio.StreamReader) -> AsyncIterator[FlvTag]:
    """FLV tags as they come out of a live encoder's pipe (``ffmpeg -f flv pipe:1``)."""
    header = await stream.readexactly(9)
    if header[:3] != b"FLV":
        raise ValueError("not an FLV stream")
    await stream.readexactly(struct.unpack_from(">I", header, 5)[0] - 9 + 4)
    while True:
        try:
            head = await stream.readexactly(11)
        except asyncio.IncompleteReadError:
            return
        size = int.from_bytes(head[1:4], "big")
        timestamp = int.from_bytes(head[4:7], "big") | (head[7] << 24)
        body = await stream.readexactly(size + 4)  # + PreviousTagSize
        yield FlvTag(head[0] & 0x1F, timestamp, body[:size])
