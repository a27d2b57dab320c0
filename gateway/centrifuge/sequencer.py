"""Per-channel ordering at the edge: offsets in, publications out in order, each once.

The chat component gives every accepted message of a channel the next offset
(1, 2, 3…) in its database, in the transaction that stores it, with the channel row
locked: offsets have no gaps and follow the decision order. It publishes
``chat.accepted`` after commit, so two chat workers can put offsets 7 and 8 on the bus
in the wrong order, a redelivery can put 7 there twice, and a gateway's core NATS
subscription can miss one while it reconnects. Every gateway process therefore runs
the same small algorithm per channel, and they all agree:

- deliver offset ``next`` and whatever is buffered right after it;
- drop an offset below ``next`` (a duplicate);
- buffer an offset above ``next`` (a gap) and ask for the missing range from the
  chat history (the missing offsets are committed: a higher one exists);
- give up on a gap only if history cannot fill it (never seen in practice).

It also keeps the last ``ring_size`` publications, which serve new subscribers'
history and reconnecting subscribers' recovery without a round trip. No I/O here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from gateway.centrifuge.protocol import encode_publication

# Past this many buffered publications the gap is abandoned rather than held.
MAX_PENDING: Final = 1000


@dataclass(frozen=True, slots=True)
class Pub:
    offset: int
    message_id: str
    data: bytes  # the publication's data (JSON)
    encoded: bytes  # the Publication object (JSON), as it goes into replies and pushes

    @classmethod
    def build(cls, offset: int, message_id: str, data: bytes) -> Pub:
        return cls(offset, message_id, data, encode_publication(data, offset))


class Sequencer:
    def __init__(self, ring_size: int = 100) -> None:
        self.epoch = ""
        self.ready = False
        self.next_offset = 1
        self._ring: deque[Pub] = deque(maxlen=ring_size)
        self._pending: dict[int, Pub] = {}

    @property
    def top(self) -> int:
        """The highest offset delivered (0: none yet)."""
        return self.next_offset - 1

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def reset(self, epoch: str, top: int, history: Iterable[Pub]) -> list[Pub]:
        """Start from the chat history (``top`` = its latest offset). Returns what was
        buffered before and now follows ``top`` in order."""
        self.epoch = epoch
        self.ready = True
        self.next_offset = top + 1
        self._ring.clear()
        self._ring.extend(sorted((p for p in history if p.offset <= top), key=lambda p: p.offset))
        early = self._pending
        self._pending = {}
        return self._accept_many(early.values())

    def offer(self, pub: Pub, epoch: str) -> list[Pub] | None:
        """Publications now deliverable, in order; None when ``epoch`` is not ours
        (the channel's history was reset: the caller starts over with :meth:`reset`)."""
        if not self.ready:
            # Before the history arrived: hold it, reset() sorts it out.
            if len(self._pending) < MAX_PENDING:
                self._pending[pub.offset] = pub
            return []
        if epoch and epoch != self.epoch:
            return None
        return self._accept(pub)

    def fill(self, pubs: Iterable[Pub]) -> list[Pub]:
        """Publications fetched from history to close a gap (duplicates are fine)."""
        return self._accept_many(pubs)

    def missing(self) -> tuple[int, int] | None:
        """The first gap ``(from, to)`` inclusive, if publications wait behind one."""
        if not self._pending:
            return None
        return self.next_offset, min(self._pending) - 1

    def skip_gap(self) -> list[Pub]:
        """Give up on the missing offsets: continue from the first buffered one."""
        if not self._pending:
            return []
        self.next_offset = min(self._pending)
        return self._drain()

    def latest(self, limit: int) -> list[Pub]:
        if limit <= 0:
            return []
        items = list(self._ring)
        return items[-limit:]

    def since(self, offset: int) -> list[Pub] | None:
        """Everything after ``offset``, or None when the ring does not reach back there."""
        if offset >= self.top:
            return []
        items = list(self._ring)
        if not items or items[0].offset > offset + 1:
            return None
        return [p for p in items if p.offset > offset]

    def clear_through(self, offset: int) -> None:
        """Forget publications up to ``offset`` (a moderator's /clear)."""
        kept = [p for p in self._ring if p.offset > offset]
        self._ring.clear()
        self._ring.extend(kept)

    def _accept_many(self, pubs: Iterable[Pub]) -> list[Pub]:
        ready: list[Pub] = []
        for pub in sorted(pubs, key=lambda p: p.offset):
            ready.extend(self._accept(pub))
        return ready

    def _accept(self, pub: Pub) -> list[Pub]:
        if pub.offset < self.next_offset:
            return []  # delivered already: a redelivery, or history overlapping live
        if pub.offset > self.next_offset:
            if len(self._pending) >= MAX_PENDING:
                self._pending[pub.offset] = pub
                return self.skip_gap()
            self._pending[pub.offset] = pub
            return []
        return self._drain(first=pub)

    def _drain(self, first: Pub | None = None) -> list[Pub]:
        ready: list[Pub] = []
        if first is not None:
            ready.append(first)
            self._ring.append(first)
            self.next_offset += 1
        while (pub := self._pending.pop(self.next_offset, None)) is not None:
            ready.append(pub)
            self._ring.append(pub)
            self.next_offset += 1
        # Anything left below next_offset is stale now (skip_gap jumped over it).
        for offset in [o for o in self._pending if o < self.next_offset]:
            del self._pending[offset]
        return ready
