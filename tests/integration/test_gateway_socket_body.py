"""A big body read straight from the socket (gateway/http_socket_body.py), through the
gateway's real HTTP protocol: whole, in order, with the connection usable afterwards,
and with the same interruptions as the usual path (a cut, a reset, a silence).

Every test runs twice: with the body's own thread reading ahead for the loop, and
with a worker thread of the handler's reading it into its buffer (ThreadBodyReader,
what the folder store does for a tus PATCH)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from gateway.http_socket_body import READ_SIZE, DirectBody, claimed_bodies, offered_socket_body
from gateway.tus.body import BodyInterrupted, ThreadBodyReader, read_body
from tests.fixtures.asgi_server import serve_with_gateway_protocol

MiB = 1024 * 1024
# The most one asyncio read (and so one llhttp chunk) brings: bigger chunks came
# from the socket reader.
LOOP_READ = 256 * 1024
LIMITED = 5 * MiB // 2


@dataclass
class Seen:
    received: int
    digest: str
    largest_chunk: int
    interrupted: tuple[str, int] | None  # why, and how many bytes the reader said came


SEEN: list[Seen] = []
READ_AHEAD = [True]  # the mode of the test running (see the autouse fixture)


@pytest.fixture(autouse=True, params=["read-ahead", "worker-thread"])
def _read_mode(request: pytest.FixtureRequest) -> None:
    READ_AHEAD[0] = request.param == "read-ahead"


def _read_on_a_thread(direct: DirectBody, limit: int) -> Seen:
    """What a store's worker thread does: the body into one buffer, over and over."""
    reader = ThreadBodyReader(direct, limit=limit)
    view = memoryview(bytearray(READ_SIZE))
    digest, largest, interrupted = hashlib.sha256(), 0, None
    try:
        while count := reader.readinto(view):
            digest.update(view[:count])
            largest = max(largest, count)
    except BodyInterrupted as exc:
        interrupted = (exc.reason, exc.received)
    return Seen(reader.received, digest.hexdigest(), largest, interrupted)


async def _digest_app(scope: Any, receive: Any, send: Any) -> None:
    """Reads the body as the tus engine does and answers its sha256. ``/limited``
    takes at most LIMITED bytes, ``/silent`` gives up after 0.5 s without a byte."""
    if scope["type"] != "http":
        return
    limit = LIMITED if scope["path"] == "/limited" else 1 << 40
    timeout_s = 0.5 if scope["path"] == "/silent" else 20.0
    digest, received, largest, interrupted = hashlib.sha256(), 0, 0, None
    socket_body = offered_socket_body(scope)
    direct = None
    if socket_body is not None:
        direct = socket_body.claim(timeout_s, read_ahead=READ_AHEAD[0])
    try:
        if direct is not None and not direct.read_ahead:
            seen = await asyncio.to_thread(_read_on_a_thread, direct, limit)
        else:
            body = read_body(receive, limit=limit, timeout_s=timeout_s, direct=direct)
            try:
                async for chunk in body:
                    digest.update(chunk)
                    received += len(chunk)
                    largest = max(largest, len(chunk))
            except BodyInterrupted as exc:
                interrupted = (exc.reason, exc.received)
            seen = Seen(received, digest.hexdigest(), largest, interrupted)
    finally:
        if direct is not None:
            direct.release()
    SEEN.append(seen)
    answer = seen.digest.encode()
    headers = [(b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@contextlib.asynccontextmanager
async def _server() -> AsyncIterator[int]:
    SEEN.clear()
    async with serve_with_gateway_protocol(_digest_app) as served:
        yield served.port
    assert claimed_bodies() == 0, "a claimed body was never released"


def _put(path: str, length: int, *extra: bytes) -> bytes:
    head = b"PUT %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n" % (path.encode(), length)
    return head + b"".join(extra) + b"\r\n"


GET_AND_CLOSE = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


async def _answers(reader: asyncio.StreamReader) -> list[bytes]:
    """Every answer's body until the server closes the connection."""
    data = await asyncio.wait_for(reader.read(), timeout=20)
    return [part.split(b"\r\n\r\n", 1)[1] for part in data.split(b"HTTP/1.1 200 OK")[1:]]


async def _wait_seen(count: int) -> None:
    for _ in range(2000):
        if len(SEEN) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the application saw {len(SEEN)} bodies, not {count}")


async def test_a_big_body_comes_from_the_socket_and_the_next_requests_are_served() -> None:
    """Two big bodies one after the other on one connection, then a pipelined GET in
    the same write as the second body: each arrives whole, the parser starts again
    right after each, and a small body still goes through the loop."""
    bodies = [os.urandom(6 * MiB + 123), os.urandom(3 * MiB)]
    async with _server() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(_put("/", len(bodies[0])) + bodies[0])
            await writer.drain()
            await _wait_seen(1)
            writer.write(_put("/", len(bodies[1])) + bodies[1] + GET_AND_CLOSE)
            await writer.drain()
            answers = await _answers(reader)
        finally:
            writer.close()
    expected = [hashlib.sha256(body).hexdigest().encode() for body in bodies]
    assert answers == [*expected, hashlib.sha256().hexdigest().encode()]
    assert [seen.received for seen in SEEN] == [len(bodies[0]), len(bodies[1]), 0]
    # Read by the socket's thread: chunks of up to READ_SIZE, more than a loop read.
    assert LOOP_READ < SEEN[0].largest_chunk <= READ_SIZE
    assert LOOP_READ < SEEN[1].largest_chunk <= READ_SIZE


async def test_expect_100_continue_is_answered_when_the_socket_is_claimed() -> None:
    body = os.urandom(3 * MiB)
    async with _server() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(_put("/", len(body), b"Expect: 100-continue\r\nConnection: close\r\n"))
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            writer.write(body)
            answers = await _answers(reader)
        finally:
            writer.close()
    assert interim.startswith(b"HTTP/1.1 100 Continue"), interim
    assert answers == [hashlib.sha256(body).hexdigest().encode()]


async def test_a_cut_body_is_a_disconnect_that_keeps_every_byte_sent() -> None:
    sent = os.urandom(3 * MiB + 5)
    async with _server() as port:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_put("/", 9 * MiB) + sent)
        await writer.drain()
        writer.close()
        await _wait_seen(1)
    assert [
        Seen(
            len(sent),
            hashlib.sha256(sent).hexdigest(),
            SEEN[0].largest_chunk,
            ("disconnect", len(sent)),
        )
    ] == SEEN


async def test_a_reset_connection_is_a_disconnect() -> None:
    async with _server() as port:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_put("/", 9 * MiB) + os.urandom(3 * MiB))
        await writer.drain()
        await asyncio.sleep(0.2)
        sock = writer.get_extra_info("socket")
        # SO_LINGER 0: close sends a reset instead of a FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()
        await _wait_seen(1)
    assert SEEN[0].interrupted == ("disconnect", SEEN[0].received)
    assert SEEN[0].received <= 3 * MiB


async def test_a_silent_client_times_out_with_what_came_and_is_then_closed() -> None:
    sent = os.urandom(3 * MiB)
    async with _server() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(_put("/silent", 9 * MiB) + sent)
            await writer.drain()
            # The answer comes after the timeout, and the connection closes: what the
            # client may still send can no longer be told apart from a request.
            answers = await _answers(reader)
        finally:
            writer.close()
    assert [
        Seen(
            len(sent),
            hashlib.sha256(sent).hexdigest(),
            SEEN[0].largest_chunk,
            ("timeout", len(sent)),
        )
    ] == SEEN
    assert answers == [hashlib.sha256(sent).hexdigest().encode()]


async def test_a_body_longer_than_wanted_is_cut_and_the_connection_closed() -> None:
    """The rest of the body is read and dropped, so the close is a FIN, not a reset
    that could cost the client its answer."""
    body = os.urandom(4 * MiB)
    async with _server() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            # No Connection: close, yet the server closes after its answer.
            writer.write(_put("/limited", len(body)) + body)
            await writer.drain()
            answers = await _answers(reader)
        finally:
            writer.close()
    assert answers == [hashlib.sha256(body[:LIMITED]).hexdigest().encode()]
    assert [seen.received for seen in SEEN] == [LIMITED]


async def test_a_small_body_goes_through_the_loop() -> None:
    body = os.urandom(MiB)
    async with _server() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(_put("/", len(body), b"Connection: close\r\n") + body)
            answers = await _answers(reader)
        finally:
            writer.close()
    assert answers == [hashlib.sha256(body).hexdigest().encode()]
    assert SEEN[0].largest_chunk <= LOOP_READ
