"""A room's flush: one frame for every member, a slice of members per loop turn, in order."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import cast

from nats.aio.client import Client as NatsClient

from gateway.centrifuge.hub import WRITE_SLICE, ChatHub, Room


@dataclass
class FakeMember:
    client_id: str
    user_id: str = ""
    frames: list[str] = field(default_factory=list)

    def deliver(self, frame: str) -> None:
        self.frames.append(frame)

    def deliver_wire(self, frame: str, wire: bytes) -> None:
        assert wire.endswith(frame.encode())  # the same frame, encoded for the socket
        self.frames.append(frame)


async def turns(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_a_big_rooms_flush_leaves_the_loop_between_slices_and_keeps_order() -> None:
    hub = ChatHub(cast(NatsClient, None), gateway_id="gw-test")  # nothing here talks to NATS
    room = Room(hub, "s1")
    members = [FakeMember(f"c{n}") for n in range(2 * WRITE_SLICE + 50)]
    for member in members:
        room.add(member)

    room._push(b'{"data":{"n":1}}')
    room.flush()
    written = [len(m.frames) for m in members]
    assert written == [1] * WRITE_SLICE + [0] * (len(members) - WRITE_SLICE)
    first = members[0].frames[0]

    # A second flush before the first has reached everyone finishes the first, then
    # starts its own: every member gets the frames in order.
    room._push(b'{"data":{"n":2}}')
    room.flush()
    assert all(m.frames[0] == first for m in members)
    await turns(5)
    second = members[0].frames[1]
    assert second != first
    assert all(m.frames == [first, second] for m in members)
    assert hub.delivered == 2 * len(members)
    await room.stop()


async def test_a_stopped_room_writes_no_more_slices() -> None:
    hub = ChatHub(cast(NatsClient, None), gateway_id="gw-test")
    room = Room(hub, "s2")
    members = [FakeMember(f"c{n}") for n in range(WRITE_SLICE + 1)]
    for member in members:
        room.add(member)
    room._push(b'{"data":{}}')
    room.flush()
    await room.stop()
    await turns(3)
    assert members[-1].frames == []
