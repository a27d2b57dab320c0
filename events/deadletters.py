"""Dead letters: list them, and redrive them to where they came from.

A dead letter is a copy of a message some consumer gave up on, stored in
``DEAD_LETTERS`` under ``deadletter.<STREAM>.<consumer>`` with ``VP-*`` provenance
headers (``events.consumer.dead_letter``).

Redrive republishes the original payload to its original subject with a fresh
``Nats-Msg-Id`` (``<original id>:redrive:<dead-letter seq>``: the original id would be
dropped as a duplicate inside the window; the suffix keeps a repeated redrive of the
same dead letter deduplicated), waits for the PubAck, and only then deletes the dead
letter. A crash in between leaves the dead letter in place and a second redrive is
absorbed by JetStream's duplicate window.

Every consumer of that subject sees the redriven copy, not only the one that failed:
the others already processed the event and skip it through their processed-event
record (the payload keeps its ``event_id``; ``events.consumer.run_once``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime

from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import NotFoundError

from events.consumer import (
    DEAD_LETTER_PREFIX,
    H_CONSUMER,
    H_DELIVERIES,
    H_ERROR,
    H_MSG_ID,
    H_SEQ,
    H_STREAM,
    H_SUBJECT,
)
from events.replay import MSG_ID, StoredReader, StoredRecord
from events.streams import DEAD_LETTERS

DEAD_LETTER_STREAM = DEAD_LETTERS.name
H_REDRIVE_OF = "VP-Redrive-Of"  # the dead letter's sequence, on the redriven copy
PUBLISH_TIMEOUT_S = 5.0
# Provenance headers describe the dead letter, not the event: they stay behind.
_PROVENANCE = {H_SUBJECT, H_STREAM, H_SEQ, H_CONSUMER, H_ERROR, H_DELIVERIES, H_MSG_ID}


class RedriveError(RuntimeError):
    """A dead letter lacks its provenance, or the selection is empty or ambiguous."""


@dataclass(frozen=True)
class DeadLetter:
    seq: int  # in DEAD_LETTERS
    time: datetime
    original_subject: str
    original_stream: str
    original_seq: int
    consumer: str
    deliveries: int
    error: str
    original_msg_id: str
    headers: dict[str, str]
    data: bytes

    @classmethod
    def from_record(cls, record: StoredRecord) -> DeadLetter:
        headers = record.headers
        stream = headers.get(H_STREAM, "")
        seq = int(headers.get(H_SEQ) or 0)
        return cls(
            seq=record.seq,
            time=record.time,
            original_subject=headers.get(H_SUBJECT, ""),
            original_stream=stream,
            original_seq=seq,
            consumer=headers.get(H_CONSUMER, ""),
            deliveries=int(headers.get(H_DELIVERIES) or 0),
            error=headers.get(H_ERROR, ""),
            original_msg_id=headers.get(H_MSG_ID) or f"{stream}:{seq}",
            headers=headers,
            data=record.data,
        )

    @property
    def redrive_msg_id(self) -> str:
        return f"{self.original_msg_id}:redrive:{self.seq}"

    def redrive_headers(self) -> dict[str, str]:
        headers = {name: value for name, value in self.headers.items() if name not in _PROVENANCE}
        headers[MSG_ID] = self.redrive_msg_id
        headers[H_REDRIVE_OF] = str(self.seq)
        return headers


def dead_letter_filter(consumer: str | None = None) -> str:
    # deadletter.<STREAM>.<consumer>: any stream, one consumer or all.
    return f"{DEAD_LETTER_PREFIX}.*.{consumer}" if consumer else f"{DEAD_LETTER_PREFIX}.>"


async def list_dead_letters(
    js: JetStreamContext, *, consumer: str | None = None
) -> list[DeadLetter]:
    """Every dead letter (of ``consumer``), oldest first."""
    reader = StoredReader(js, dead_letter_filter(consumer), stream=DEAD_LETTER_STREAM)
    async with reader:
        return [DeadLetter.from_record(record) async for record in reader]


async def get_dead_letter(js: JetStreamContext, seq: int) -> DeadLetter:
    try:
        raw = await js.get_msg(DEAD_LETTER_STREAM, seq)
    except NotFoundError as exc:
        raise RedriveError(f"no dead letter with sequence {seq}") from exc
    record = StoredRecord(
        seq=raw.seq or seq,
        subject=raw.subject or "",
        headers=dict(raw.headers or {}),
        data=raw.data or b"",
        time=raw.time or datetime.min,
        stream=DEAD_LETTER_STREAM,
    )
    return DeadLetter.from_record(record)


async def select_dead_letters(
    js: JetStreamContext,
    *,
    consumer: str | None = None,
    seq: int | None = None,
    all_: bool = False,
) -> list[DeadLetter]:
    """The dead letters a redrive acts on; refuses an unqualified "everything"."""
    if seq is not None:
        letter = await get_dead_letter(js, seq)
        if consumer and letter.consumer != consumer:
            raise RedriveError(
                f"dead letter {seq} belongs to {letter.consumer!r}, not {consumer!r}"
            )
        return [letter]
    if consumer is None and not all_:
        raise RedriveError("say which: --seq N, --consumer C, or --all")
    return await list_dead_letters(js, consumer=consumer)


async def redrive_one(js: JetStreamContext, letter: DeadLetter) -> PubAck:
    """Republish one dead letter to its origin, then delete it (only after the PubAck)."""
    if not letter.original_subject or not letter.original_stream:
        raise RedriveError(f"dead letter {letter.seq} has no VP-Original-* headers")
    ack = await js.publish(
        letter.original_subject,
        letter.data,
        timeout=PUBLISH_TIMEOUT_S,
        stream=letter.original_stream,  # refuse to land anywhere else
        headers=letter.redrive_headers(),
    )
    # NotFound: a concurrent redrive already removed it; its copy was deduplicated.
    with contextlib.suppress(NotFoundError):
        await js.delete_msg(DEAD_LETTER_STREAM, letter.seq)
    return ack


async def redrive(
    js: JetStreamContext, letters: list[DeadLetter]
) -> list[tuple[DeadLetter, PubAck]]:
    return [(letter, await redrive_one(js, letter)) for letter in letters]
