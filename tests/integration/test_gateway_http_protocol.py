"""The gateway's HTTP protocol (llhttp): it bounds the request head, and hands the body
over in the parser's chunks (gateway/http_body_queue.py) with uvicorn's semantics."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect

from gateway.http_protocol import MAX_HEAD_BYTES
from tests.fixtures.asgi_server import serve_with_gateway_protocol


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


async def _echo_digest(scope: Any, receive: Any, send: Any) -> None:
    """``/early`` answers before reading its body, ``/slow`` reads it slowly; each
    answers with the body's sha256 and how many messages brought it; at a
    disconnect the sha256 of what came is recorded."""
    if scope["type"] != "http":
        return
    digest, messages = hashlib.sha256(), 0
    if scope["path"] != "/early":
        while True:
            if scope["path"] == "/slow":  # the body queues up while this sleeps
                await asyncio.sleep(0.005)
            message = await receive()
            if message["type"] == "http.disconnect":
                DISCONNECTS.append(digest.hexdigest())
                return
            digest.update(message.get("body", b""))
            messages += 1
            if not message.get("more_body"):
                break
    body = f"{digest.hexdigest()} {messages}".encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


DISCONNECTS: list[str] = []


@contextlib.asynccontextmanager
async def _server(app: Callable[..., Any] = _echo_length) -> AsyncIterator[int]:
    async with serve_with_gateway_protocol(app) as served:
        yield served.port


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


def _put(path: str, body: bytes, *, extra: bytes = b"") -> bytes:
    head = b"PUT %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n"
    return head % (path.encode(), len(body), extra) + body


async def test_a_large_body_arrives_whole_in_several_messages() -> None:
    """3 MiB, more than the queue's high-water mark: reading pauses and resumes."""
    body = os.urandom(3 * 1024 * 1024 + 17)
    last = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    async with _server(_echo_digest) as port:
        answer = await _exchange(port, [_put("/", body), last])
    first, second = answer.split(b"HTTP/1.1 200 OK")[1:]
    digest, messages = first.split(b"\r\n\r\n")[1].split()
    assert digest.decode() == hashlib.sha256(body).hexdigest()
    assert int(messages) > 1
    assert second.split(b"\r\n\r\n")[1].split()[0].decode() == hashlib.sha256().hexdigest()


async def test_expect_100_continue_is_answered_before_the_body() -> None:
    body = b"z" * 5000
    head = b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nExpect: 100-continue\r\n"
    async with _server(_echo_digest) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(head % len(body) + b"Connection: close\r\n\r\n")
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            writer.write(body)
            answer = await asyncio.wait_for(reader.read(), timeout=10)
        finally:
            writer.close()
    assert interim.startswith(b"HTTP/1.1 100 Continue"), interim
    assert hashlib.sha256(body).hexdigest().encode() in answer, answer


async def test_an_answer_before_the_body_drops_it_and_serves_the_next_request() -> None:
    body = os.urandom(2 * 1024 * 1024)
    last = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    async with _server(_echo_digest) as port:
        answer = await _exchange(port, [_put("/early", body), last])
    assert answer.count(b"HTTP/1.1 200 OK") == 2, answer[:300]


async def test_a_client_gone_mid_body_is_a_disconnect() -> None:
    DISCONNECTS.clear()
    async with _server(_echo_digest) as port:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_put("/", b"q" * 9_000_000)[:100_000])
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()
        for _ in range(500):
            if DISCONNECTS:
                break
            await asyncio.sleep(0.01)
    assert len(DISCONNECTS) == 1


async def test_what_arrived_before_a_disconnect_is_handed_over_first() -> None:
    """3 MiB sent then the connection closed, read slowly: the bytes queued when the
    close is seen still reach the application, then the disconnect (a cut tus PATCH
    keeps all that arrived)."""
    DISCONNECTS.clear()
    sent = os.urandom(3 * 1024 * 1024)
    async with _server(_echo_digest) as port:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_put("/slow", sent + b"never sent")[: -len(b"never sent")])
        await writer.drain()
        writer.close()
        for _ in range(1000):
            if DISCONNECTS:
                break
            await asyncio.sleep(0.01)
    received = list(DISCONNECTS)
    assert received == [hashlib.sha256(sent).hexdigest()]


async def _echo_websocket(scope: Any, receive: Any, send: Any) -> None:
    """A WebSocket that echoes one text message; plain HTTP as in ``_echo_length``."""
    if scope["type"] == "http":
        await _echo_length(scope, receive, send)
        return
    if scope["type"] != "websocket":
        return
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    message = await receive()
    await send({"type": "websocket.send", "text": f"echo {message['text']}"})
    await send({"type": "websocket.close", "code": 1000})


async def test_a_websocket_upgrade_is_handed_over() -> None:
    """An upgrade makes no request cycle: nothing of the body queue may touch it."""
    async with (
        _server(_echo_websocket) as port,
        connect(f"ws://127.0.0.1:{port}/ws") as websocket,
    ):
        await websocket.send("hello")
        reply = await asyncio.wait_for(websocket.recv(), timeout=10)
    assert reply == "echo hello"
