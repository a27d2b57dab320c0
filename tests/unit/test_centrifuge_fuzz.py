"""Any input yields actions or a close, never an exception (h11's fuzz invariant)."""

from __future__ import annotations

import contextlib
import json
import random

import pytest

from gateway.centrifuge.protocol import ProtocolError, parse_frame
from gateway.centrifuge.session import Close, Identity, Session

pytestmark = pytest.mark.unit

VALID = [
    {"id": 1, "connect": {"token": "t"}},
    {"id": 2, "subscribe": {"channel": "chat:a", "recover": True, "offset": 3, "epoch": "e"}},
    {"id": 3, "publish": {"channel": "chat:a", "data": {"text": "hi", "amount": 2}}},
    {"id": 4, "history": {"channel": "chat:a", "limit": 5, "since": {"offset": 1, "epoch": "e"}}},
    {"id": 5, "presence_stats": {"channel": "chat:a"}},
    {"id": 6, "unsubscribe": {"channel": "chat:a"}},
    {},
]


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        choice = rng.random()
        position = rng.randrange(len(buf) + 1)
        if choice < 0.4 and buf:
            buf[min(position, len(buf) - 1)] = rng.randrange(256)
        elif choice < 0.7:
            buf.insert(position, rng.choice(b'{}[]":,\n\\0123456789-eE.tfn\xff\x00'))
        elif buf:
            del buf[min(position, len(buf) - 1)]
    return bytes(buf)


def test_random_and_mutated_frames_never_crash() -> None:
    rng = random.Random(20260520)
    for round_number in range(3000):
        session = Session(client_id="c")
        if round_number % 2:
            session.receive(json.dumps(VALID[0]))
            session.connected(1, Identity(user_id="u"), now=0.0)
        if round_number % 3 == 0:
            frame = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        else:
            lines = [json.dumps(rng.choice(VALID)).encode() for _ in range(rng.randint(1, 4))]
            frame = _mutate(rng, b"\n".join(lines))
        with contextlib.suppress(ProtocolError):
            parse_frame(frame)
        actions = session.receive(frame)
        closes = [a for a in actions if isinstance(a, Close)]
        assert len(closes) <= 1
        if closes:
            assert actions[-1] is closes[0]  # nothing after a close
