"""BodyQueue: chunks out as they came in (the same objects), reading paused past the
high-water mark and resumed at the low one."""

from __future__ import annotations

from gateway.http_body_queue import HIGH_WATER, LOW_WATER, BodyQueue


def test_chunks_come_out_in_order_and_uncopied() -> None:
    queue = BodyQueue()
    first, second = b"a" * 1000, b"b" * 2000
    assert not queue.push(first)
    assert not queue.push(second)
    assert queue
    assert queue.queued == 3000
    out, _ = queue.pop()
    assert out is first
    out, _ = queue.pop()
    assert out is second
    assert not queue
    assert queue.queued == 0


def test_an_empty_queue_pops_nothing_and_lets_reading_go_on() -> None:
    queue = BodyQueue()
    assert queue.pop() == (b"", True)
    assert not queue.push(b"")  # llhttp never sends one, but it must not count
    assert not queue


def test_reading_pauses_past_high_water_and_resumes_at_low_water() -> None:
    queue = BodyQueue()
    piece = b"x" * (HIGH_WATER // 4)
    pauses = [queue.push(piece) for _ in range(5)]
    assert pauses == [False, False, False, False, True]
    resumes = []
    while queue:
        _, resume = queue.pop()
        resumes.append((queue.queued, resume))
    assert resumes == [(size, size <= LOW_WATER) for size, _ in resumes]
    assert [resume for _, resume in resumes] == [False, False, True, True, True]
