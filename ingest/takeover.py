"""Half-open takeover across ingest processes, over core NATS request/reply.

A publish whose channel lease is held by another process (:class:`~ingest.keys.
PublisherLeases`) asks on ``ingest.takeover.{stream_id}``; every ingest process
listens (no queue group: any one of them may hold the publisher). The holder answers
``released`` after dropping a publisher that sent no media for ``takeover_idle_s``
(as a timeout: its broadcast lingers for the newcomer to continue, through
:mod:`ingest.packager.handoff`), or ``busy`` when it is still sending; the others stay
silent. Without an answer in :data:`ASK_TIMEOUT_S` (the holder crashed: its lease
lapses on its own) the publish is refused as before. No JetStream stream takes the
subject, so no PubAck answers the request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from common.logs import get_logger

__all__ = ["ASK_TIMEOUT_S", "SUBJECT", "TakeoverLink"]

log = get_logger(__name__)

SUBJECT: Final = "ingest.takeover"  # + ".{stream_id}"
# The holder waits up to 5 s for its dropped connection to finish (_Publisher.replace).
ASK_TIMEOUT_S: Final = 7.0
RELEASED: Final = b"released"
BUSY: Final = b"busy"

# The holder's side: True if it dropped its silent publisher, False if that one is
# still sending, None if the channel has no publisher in this process.
Release = Callable[[str], Awaitable[bool | None]]


class TakeoverLink:
    """``connection`` is called at each use: the broker connects after this is built."""

    def __init__(self, connection: Callable[[], Client]) -> None:
        self._connection = connection

    async def ask(self, stream_id: str) -> bool:
        """Ask the process holding ``stream_id``'s publisher to drop it if it is silent."""
        try:
            reply = await self._connection().request(
                f"{SUBJECT}.{stream_id}", b"", timeout=ASK_TIMEOUT_S
            )
        except (NatsTimeoutError, NoRespondersError):
            return False
        return reply.data == RELEASED

    async def serve(self, release: Release) -> Subscription:
        # nats-py runs one subscription's callbacks in turn: a release waits for its
        # connection to end, so each request gets a task of its own.
        tasks: set[asyncio.Task[None]] = set()

        async def handle(msg: Msg) -> None:
            task = asyncio.get_running_loop().create_task(answer(msg))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        async def answer(msg: Msg) -> None:
            stream_id = msg.subject.removeprefix(SUBJECT + ".")
            try:
                released = await release(stream_id)
            except Exception:
                log.exception("takeover request not handled", stream_id=stream_id)
                released = False
            if released is not None and msg.reply:
                await msg.respond(RELEASED if released else BUSY)

        return await self._connection().subscribe(f"{SUBJECT}.*", cb=handle)
