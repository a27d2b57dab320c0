"""What follows a PATCH's answer: its ``chunk.uploaded``, then its lock, kept or freed.

A tus client sends its next chunk the moment it has the 204, and that 204 only
promises durable bytes. So for every chunk but the last, the event is published
after the answer, and the lock is *parked* rather than released: if this process gets
the upload's next PATCH within ``LINGER_S`` (the client's turnaround is a few
milliseconds), that PATCH adopts the lease as it is — no release, no acquire, two
commits saved per chunk. Otherwise the lock is released as before, and a PATCH that
reached another process, which found it held, gets it then (the engine waits a
moment for a held lock before answering 423).

Events stay in chunk order: each settling waits for the previous one's publish. A
crash between answer and publish loses one progress event, never a byte (the offset
comes from the store), and the parked lease runs out like any dead PATCH's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from common.logs import get_logger
from gateway.tus.chunks import DurableState
from gateway.tus.leases import LeaseKeeper
from gateway.tus.models import Upload

__all__ = ["LINGER_S", "Parked", "Settling"]

log = get_logger(__name__)

# How long an answered PATCH's lock waits for the same upload's next PATCH here.
LINGER_S: Final = 0.25


@dataclass(slots=True, eq=False)
class Parked:
    """An answered PATCH's lease: for its upload's next PATCH, or to be released."""

    row: Upload  # as the lock holder left it: nobody else changes a locked upload
    state: DurableState  # what the store holds, for the same reason
    lease: LeaseKeeper
    exits: contextlib.AsyncExitStack  # stops the lease's renewal (and frees it if held)
    # True: the next PATCH adopted the lease; False: release it.
    decision: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Settling:
    """One per engine: the answered PATCHes whose event and lock are still to settle."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._parked: dict[str, Parked] = {}

    def start(
        self,
        upload_id: str,
        parked: Parked,
        publish: Callable[[], Awaitable[None]],
    ) -> None:
        """Settle in the background: ``publish()``, then hand the lease over or free it."""
        previous = self._tasks.get(upload_id)
        self._parked[upload_id] = parked
        task = asyncio.get_running_loop().create_task(
            self._settle(upload_id, parked, previous, publish),
            name=f"tus-settle-{upload_id}",
        )
        self._tasks[upload_id] = task
        task.add_done_callback(lambda done: self._forget(upload_id, done))

    def adopt(self, upload_id: str, user_id: str) -> Parked | None:
        """The parked lease of ``upload_id``, now the caller's (its ``exits`` with it)."""
        parked = self._parked.get(upload_id)
        if parked is None or parked.row.user_id != user_id:
            return None
        del self._parked[upload_id]
        if parked.lease.lost:
            _decide(parked, adopted=False)
            return None
        parked.decision.set_result(True)
        return parked

    async def settled(self, upload_id: str) -> None:
        """Until ``upload_id``'s settling is over, its parked lock released now."""
        parked = self._parked.pop(upload_id, None)
        if parked is not None:
            _decide(parked, adopted=False)
        task = self._tasks.get(upload_id)
        if task is not None:
            await asyncio.wait([task])

    async def drain(self) -> None:
        """Until every settling is over, parked locks released (shutdown)."""
        for parked in self._parked.values():
            _decide(parked, adopted=False)
        self._parked.clear()
        if self._tasks:
            await asyncio.wait(list(self._tasks.values()))

    async def _settle(
        self,
        upload_id: str,
        parked: Parked,
        previous: asyncio.Task[None] | None,
        publish: Callable[[], Awaitable[None]],
    ) -> None:
        loop = asyncio.get_running_loop()
        linger_until = loop.time() + LINGER_S
        if previous is not None:
            await asyncio.wait([previous])  # its event first
        await publish()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(linger_until):
                await asyncio.shield(parked.decision)
        if self._parked.get(upload_id) is parked:
            del self._parked[upload_id]
        _decide(parked, adopted=False)
        if parked.decision.result():
            return  # the next PATCH holds the lease, and will release it
        async with parked.exits:
            try:
                await parked.lease.release(updated_at=datetime.now(UTC))
            except Exception as exc:  # the lease runs out on its own
                log.warning("lock not released", upload_id=upload_id, error=str(exc))

    def _forget(self, upload_id: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(upload_id) is task:
            del self._tasks[upload_id]


def _decide(parked: Parked, *, adopted: bool) -> None:
    if not parked.decision.done():
        parked.decision.set_result(adopted)
