"""Per-channel ordering at the gateway: in order, once, gaps filled from history."""

from __future__ import annotations

import random

import pytest

from gateway.centrifuge.sequencer import Pub, Sequencer

pytestmark = pytest.mark.unit


def pub(offset: int) -> Pub:
    return Pub.build(offset, f"m{offset}", b'{"n":%d}' % offset)


def offsets(pubs: list[Pub] | None) -> list[int]:
    assert pubs is not None
    return [p.offset for p in pubs]


def test_in_order_duplicates_dropped_gaps_held() -> None:
    seq = Sequencer()
    assert offsets(seq.reset("e", 2, [pub(1), pub(2)])) == []
    assert offsets(seq.offer(pub(3), "e")) == [3]
    assert offsets(seq.offer(pub(3), "e")) == []  # a redelivery
    assert offsets(seq.offer(pub(2), "e")) == []  # older than the history
    assert offsets(seq.offer(pub(5), "e")) == []  # 4 is missing
    assert seq.missing() == (4, 4)
    assert offsets(seq.offer(pub(6), "e")) == []
    assert offsets(seq.offer(pub(4), "e")) == [4, 5, 6]
    assert seq.missing() is None
    assert seq.top == 6


def test_arrivals_before_history_are_sorted_out() -> None:
    seq = Sequencer()
    assert offsets(seq.offer(pub(4), "e")) == []
    assert offsets(seq.offer(pub(2), "e")) == []
    # History knew up to 3: 2 is old, 4 follows.
    assert offsets(seq.reset("e", 3, [pub(1), pub(2), pub(3)])) == [4]
    assert offsets(seq.latest(10)) == [1, 2, 3, 4]


def test_gap_filled_from_history_and_skip() -> None:
    seq = Sequencer()
    seq.reset("e", 0, [])
    seq.offer(pub(3), "e")
    assert seq.missing() == (1, 2)
    assert offsets(seq.fill([pub(1), pub(2), pub(3)])) == [1, 2, 3]
    seq.offer(pub(6), "e")
    assert offsets(seq.skip_gap()) == [6]
    assert offsets(seq.offer(pub(5), "e")) == []  # too late, skipped


def test_epoch_change_asks_for_a_reset() -> None:
    seq = Sequencer()
    seq.reset("e1", 0, [])
    assert seq.offer(pub(1), "e2") is None


def test_recovery_from_the_ring() -> None:
    seq = Sequencer(ring_size=5)
    seq.reset("e", 0, [])
    for n in range(1, 11):
        seq.offer(pub(n), "e")
    assert offsets(seq.since(7)) == [8, 9, 10]
    assert offsets(seq.since(5)) == [6, 7, 8, 9, 10]
    assert seq.since(4) is None  # the ring starts at 6
    assert seq.since(10) == []
    assert offsets(seq.latest(2)) == [9, 10]
    seq.clear_through(8)
    assert offsets(seq.latest(50)) == [9, 10]


def test_any_arrival_order_gives_the_same_sequence() -> None:
    rng = random.Random(7)
    for _ in range(50):
        arrivals = [pub(n) for n in range(1, 41)]
        arrivals += [pub(rng.randint(1, 40)) for _ in range(10)]  # redeliveries
        rng.shuffle(arrivals)
        seq = Sequencer()
        seq.reset("e", 0, [])
        delivered: list[int] = []
        for item in arrivals:
            delivered += offsets(seq.offer(item, "e"))
        assert delivered == list(range(1, 41))
