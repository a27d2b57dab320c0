"""The gateway's HTTP protocol (llhttp) bounds the request head and nothing else."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from common.nats_server import free_port
from gateway.http_protocol import MAX_HEAD_BYTES, uvicorn_protocol_options


async def _echo_length(scope: Any, receive: Any, send: Any) -> None:
    """Answers with the number of body bytes it received."""
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = str(size).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def _server() -> AsyncIterator[int]:
    port = free_port()
    config = uvicorn.Config(
        _echo_length,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_config=None,
        access_log=False,
        **uvicorn_protocol_options(),
    )
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "uvicorn exited during start-up"
            await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        await task


async def _exchange(port: int, pieces: list[bytes]) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for piece in pieces:
            writer.write(piece)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()


@pytest.mark.parametrize("piece_size", [MAX_HEAD_BYTES * 2, 1024])
async def test_a_head_over_the_limit_is_answered_431_and_closed(piece_size: int) -> None:
    """One huge header, or the same sent a KiB at a time (a slow, endless head)."""
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 10)
    pieces = [head[i : i + piece_size] for i in range(0, len(head), piece_size)]
    async with _server() as port:
        answer = await _exchange(port, pieces)  # read() returns at the close
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]


async def test_body_bytes_beside_the_head_do_not_count_as_head() -> None:
    """A large body in the head's packets, then a second request on the connection."""
    body = b"b" * (4 * MAX_HEAD_BYTES)
    first = b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    second = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    async with _server() as port:
        answer = await _exchange(port, [first + second])
    assert answer.count(b"HTTP/1.1 200 OK") == 2, answer
    assert answer.split(b"\r\n\r\n")[1].startswith(str(len(body)).encode()), answer


async def test_a_head_just_under_the_limit_is_served() -> None:
    filler = b"a" * (MAX_HEAD_BYTES - 200)
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + filler + b"\r\nConnection: close\r\n\r\n"
    async with _server() as port:
        answer = await _exchange(port, [head[i : i + 1024] for i in range(0, len(head), 1024)])
    assert answer.startswith(b"HTTP/1.1 200 OK"), answer[:80]
