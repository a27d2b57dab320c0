"""A reader that stops reading is dropped, its queue freed; the others keep up.

The slow client is a raw socket with a tiny receive buffer that never reads after its
subscribe. The room is flooded with large accepted messages straight on NATS (as the
chat component would publish them), so the test does not wait on thousands of
decisions.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest
from nats.js import JetStreamContext
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from common.settings import Settings
from events.catalog import ChatAccepted, ChatUser, encode_event
from gateway.centrifuge.endpoint import Connection
from tests.integration.chat_stack import (
    DEADLINE_S,
    chat_settings,
    listen,
    start_gateway,
    start_worker,
    wait_for,
)

pytestmark = pytest.mark.integration

QUEUE_LIMIT = 256 * 1024
MESSAGE_CHARS = 32 * 1024
FLOOD = 300  # ~9.6 MB: far beyond the queue, the socket buffers and the transport's


class RawClient:
    """A WebSocket client over a socket we control (and stop reading)."""

    def __init__(self, url: str) -> None:
        self.protocol = ClientProtocol(parse_uri(url), max_size=None)
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter

    async def open(self, host: str, port: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        self.reader, self.writer = await asyncio.open_connection(sock=sock)
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        while True:
            events = await self._read_events()
            if any(isinstance(e, Response) for e in events):
                return

    def send(self, message: dict[str, Any]) -> None:
        self.protocol.send_text(json.dumps(message).encode())
        self._flush()

    def _flush(self) -> None:
        for chunk in self.protocol.data_to_send():
            self.writer.write(chunk)

    async def _read_events(self) -> list[Any]:
        data = await self.reader.read(65536)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        return list(self.protocol.events_received())

    async def next_text(self) -> str:
        while True:
            for event in await self._read_events():
                if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                    return bytes(event.data).decode()

    async def read_to_end(self) -> int | None:
        """Read everything left; the close code if a close frame came (None: just EOF)."""
        code = None
        while True:
            data = await self.reader.read(1 << 20)
            if not data:
                return code
            self.protocol.receive_data(data)
            for event in self.protocol.events_received():
                if isinstance(event, Frame) and event.opcode is Opcode.CLOSE:
                    code = int.from_bytes(bytes(event.data)[:2], "big")


async def test_slow_reader_is_dropped_without_memory_growing(
    settings: Settings, database_url: str, event_streams: JetStreamContext
) -> None:
    config = chat_settings(settings, database_url, chat_ws_queue_max_bytes=QUEUE_LIMIT)
    async with start_worker(config), start_gateway(config) as gateway:
        channel, stream_id = "chat:flood", "flood"
        fast = await listen(gateway.ws_url, channel)
        slow = RawClient(gateway.ws_url)
        host, port = gateway.url.removeprefix("http://").split(":")
        await slow.open(host, int(port))
        slow.send({"id": 1, "connect": {}})
        slow.send({"id": 2, "subscribe": {"channel": channel}})
        replies = [json.loads(line) for line in (await slow.next_text()).split("\n")]
        while not any(r.get("id") == 2 for r in replies):
            replies += [json.loads(line) for line in (await slow.next_text()).split("\n")]
        room = gateway.chat.hub.rooms[stream_id]
        assert len(room.members) == 2
        members = [m for m in room.members.values() if isinstance(m, Connection)]
        slow_conn = next(m for m in members if m.client_id != fast.client.client_id)
        # From here on the slow client reads nothing.
        seq = room.sequencer
        peak = 0
        nc = gateway.chat.nc
        got: list[str] = []
        first = seq.top + 1
        for number in range(1, FLOOD + 1):
            event = ChatAccepted(
                message_id=f"m{number}",
                stream_id=stream_id,
                user=ChatUser(id="u", name="flooder"),
                text=f"{number}:" + "x" * MESSAGE_CHARS,
                ts=number,
                offset=first + number - 1,
                epoch=seq.epoch,
            )
            await nc.publish(f"chat.accepted.{stream_id}", encode_event(event))
            peak = max(peak, slow_conn.outbox.size)
            if number % 5 == 0:
                # Paced to what a healthy client reads; the slow one reads nothing.
                got += [m["text"].split(":")[0] for m in await fast.messages(5)]
                peak = max(peak, slow_conn.outbox.size)
        # The fast client got everything, in order, while the slow one was cut off.
        assert got == [str(n) for n in range(1, FLOOD + 1)]
        await wait_for(lambda: slow_conn.client_id not in room.members, "the slow reader dropped")
        assert slow_conn.outbox.closed
        assert slow_conn.outbox.size == 0
        assert peak <= QUEUE_LIMIT
        assert fast.client.client_id in room.members
        code = await asyncio.wait_for(slow.read_to_end(), DEADLINE_S)
        assert code in (3008, None)  # "slow", if the close frame got through the backlog
        await fast.close()
