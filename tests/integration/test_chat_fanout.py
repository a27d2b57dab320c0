"""The fan-out hot path: pre-encoded frames written straight to the sockets, in batches.

Under uvicorn's websockets-sansio protocol (what ``python -m gateway`` runs) every
chat connection writes to its transport itself (``Outbox.direct``); a room joins the
pushes of one tick into one frame. Checked with the official SDK: every message once,
in offset order, on every client, with fewer writes than messages.
"""

from __future__ import annotations

import asyncio

import pytest
from nats.js import JetStreamContext

from common.settings import Settings
from events.catalog import ChatAccepted, ChatUser, encode_event
from gateway.centrifuge.endpoint import Connection
from gateway.centrifuge.wsframe import text_frame
from tests.integration.chat_stack import chat_settings, listen, start_gateway, start_worker

pytestmark = pytest.mark.integration

CLIENTS = 4
MESSAGES = 60


def test_text_frame_lengths() -> None:
    """The three RFC 6455 length encodings, server side (unmasked, FIN + text)."""
    assert text_frame(b"hi") == b"\x81\x02hi"
    assert text_frame(b"x" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert text_frame(b"x" * 70_000)[:10] == b"\x81\x7f" + (70_000).to_bytes(8, "big")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_batched_direct_fanout_keeps_order_and_counts(
    settings: Settings, database_url: str, event_streams: JetStreamContext
) -> None:
    config = chat_settings(settings, database_url)
    async with start_worker(config), start_gateway(config) as gateway:
        channel, stream_id = "chat:fanout", "fanout"
        listeners = [await listen(gateway.ws_url, channel) for _ in range(CLIENTS)]
        room = gateway.chat.hub.rooms[stream_id]
        members = [m for m in room.members.values() if isinstance(m, Connection)]
        assert len(members) == CLIENTS
        assert all(m.outbox.direct for m in members)

        flushes = 0
        original = room.flush

        def counting_flush() -> None:
            nonlocal flushes
            flushes += 1
            original()

        room.flush = counting_flush  # type: ignore[method-assign]
        delivered_before = gateway.chat.hub.delivered
        nc = gateway.chat.nc
        first = room.sequencer.top + 1
        for number in range(MESSAGES):
            event = ChatAccepted(
                message_id=f"m{number}",
                stream_id=stream_id,
                user=ChatUser(id="u", name="burst"),
                text=f"{number}",
                ts=number,
                offset=first + number,
                epoch=room.sequencer.epoch,
            )
            await nc.publish(f"chat.accepted.{stream_id}", encode_event(event))
        await nc.flush()
        for listener in listeners:
            got = await listener.messages(MESSAGES)
            assert [m["text"] for m in got] == [str(n) for n in range(MESSAGES)]
            assert listener.offsets == list(range(first, first + MESSAGES))
        await asyncio.sleep(0.1)  # anything extra (a duplicate) would have come by now
        assert all(listener.drain() == [] for listener in listeners)
        assert gateway.chat.hub.delivered - delivered_before == MESSAGES * CLIENTS
        # A burst goes out in a few ticks, not one write per message per socket.
        assert 1 <= flushes < MESSAGES
        for listener in listeners:
            await listener.close()
