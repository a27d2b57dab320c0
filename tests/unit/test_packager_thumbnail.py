"""The thumbnail renderer's child process: a broken keyframe or a dead child costs one
thumbnail, never the ingest, and the next render gets a fresh child."""

from __future__ import annotations

import asyncio
import os

import pytest

from ingest.packager.thumbnail import ThumbnailError, ThumbnailRenderer

AVCC = b"\x01\x64\x00\x1f\xff\xe1\x00\x00\x01\x00\x00"
BROKEN_IDR = b"\x00\x00\x00\x02\x65\x00"


async def test_a_broken_keyframe_fails_in_the_child_process() -> None:
    renderer = ThumbnailRenderer()
    try:
        with pytest.raises(ThumbnailError, match=r"did not decode|no picture"):
            await renderer.render(AVCC, BROKEN_IDR)
        pool = renderer._pool
        assert pool is not None
        (pid,) = [p.pid for p in pool._processes.values()]
        assert pid != os.getpid()  # decoded elsewhere: the ingest's GIL stays free
    finally:
        renderer.close()


async def test_a_dead_child_is_replaced() -> None:
    renderer = ThumbnailRenderer()
    try:
        with pytest.raises(ThumbnailError):
            await renderer.render(AVCC, BROKEN_IDR)
        pool = renderer._pool
        assert pool is not None
        for process in list(pool._processes.values()):
            process.kill()
            process.join(5)
        with pytest.raises(ThumbnailError, match="thumbnail process failed"):
            await renderer.render(AVCC, BROKEN_IDR)
        assert renderer._pool is None
        with pytest.raises(ThumbnailError, match=r"did not decode|no picture"):
            await renderer.render(AVCC, BROKEN_IDR)  # a new child answers
    finally:
        renderer.close()


async def test_an_oversized_keyframe_is_refused_before_the_child() -> None:
    renderer = ThumbnailRenderer()
    with pytest.raises(ThumbnailError, match="too large"):
        await renderer.render(AVCC, bytes(9 * 1024 * 1024))
    assert renderer._pool is None


async def test_the_renderer_is_busy_while_a_render_is_in_flight() -> None:
    renderer = ThumbnailRenderer()
    try:
        idle_before = not renderer.busy
        render = asyncio.ensure_future(renderer.render(AVCC, BROKEN_IDR))
        await asyncio.sleep(0)  # the render has started
        assert idle_before
        assert renderer.busy  # a stream's keyframe now skips to its next one
        with pytest.raises(ThumbnailError):
            await render
        assert not renderer.busy
    finally:
        renderer.close()
