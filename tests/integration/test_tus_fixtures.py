"""Shared fixtures and helpers for the upload tests (tus, simple API, uploader).

Not a test module (no tests here): the other ``test_tus_*`` / ``test_uploader_*``
modules import these fixtures. (Move to ``tests/fixtures/uploads.py`` + conftest's
``pytest_plugins`` once the gateway wires uploads itself.)

- ``upload_stack``: starts, on demand, the real thing on the per-test database
  (SQLite / PostgreSQL) and store (``local`` / ``s3`` on MinIO): the gateway app with
  the upload routes under uvicorn on a free port (real sockets, so tuspy and raw
  cuts work), two registered users, an :class:`EventLog` of the UPLOADS and MEDIA
  streams, and optionally the uploader in-process (its sweeper is driven by hand).
- media helpers: a small H.264/AAC MP4 made with PyAV, header forgery.
- raw-socket helpers to cut a PATCH mid-body or hold one open.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import hashlib
import io
import os
import socket
import struct
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import av
import httpx
import msgspec
import pytest
from litestar import Litestar
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import gateway.app as gateway_app_module
import gateway.bus as gateway_bus
from common.db import create_engine, session_factory
from common.nats_server import free_port
from common.settings import Settings
from common.store import ObjectStore, create_store
from events.catalog import decode_event
from events.envelope import Event
from gateway.app import create_app
from gateway.tus.wiring import (
    UPLOADS_PUBLISHES,
    tus_router,
    upload_api_router,
    upload_status_subscribers,
    uploads_lifespan,
)
from tests.fixtures.asgi_server import serve_with_gateway_protocol
from tests.fixtures.gateway import GatewayUser
from uploader.runtime import running_uploader
from uploader.services import Services as UploaderServices

MiB = 1024 * 1024
STORE_BACKENDS = ["local", "s3"]
START_TIMEOUT_S = 30.0
EVENT_TIMEOUT_S = 30.0
TUS = {"Tus-Resumable": "1.0.0"}


# --- waiting -------------------------------------------------------------------------


async def wait_until(
    check: Callable[[], Any], *, timeout_s: float = EVENT_TIMEOUT_S, what: str = "condition"
) -> Any:
    """Poll ``check`` (sync or async) until truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.02)  # a poll interval bounded by the deadline above


class EventLog:
    """Every event stored on the UPLOADS and MEDIA streams, in stream order."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Condition()
        self._subs: list[Any] = []

    async def start(self, js: JetStreamContext) -> None:
        for subject in ("upload.>", "chunk.>", "transcode.>"):
            self._subs.append(
                await js.subscribe(
                    subject,
                    ordered_consumer=True,
                    deliver_policy=DeliverPolicy.ALL,
                    cb=self._on_message,
                )
            )

    async def stop(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _on_message(self, msg: Any) -> None:
        event = decode_event(msg.data)
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def of(self, kind: type[Event], **fields: Any) -> list[Any]:
        return [
            event
            for event in self.events
            if isinstance(event, kind)
            and all(getattr(event, name) == value for name, value in fields.items())
        ]

    async def wait_for(
        self, kind: type[Event], *, timeout_s: float = EVENT_TIMEOUT_S, **fields: Any
    ) -> Any:
        async with asyncio.timeout(timeout_s), self._changed:
            while not (found := self.of(kind, **fields)):
                await self._changed.wait()
        return found[0]


# --- the stack -----------------------------------------------------------------------


@contextlib.contextmanager
def uploads_wired() -> Iterator[None]:
    """Plug the upload feature into the gateway as gateway/app.py and bus.py will."""
    added: list[tuple[list[Any], Any]] = []
    wanted: list[tuple[list[Any], Any]] = [
        (cast(list[Any], gateway_app_module.ROUTE_HANDLERS), tus_router),
        (cast(list[Any], gateway_app_module.ROUTE_HANDLERS), upload_api_router),
        (cast(list[Any], gateway_app_module.LIFESPAN_HOOKS), uploads_lifespan),
        (cast(list[Any], gateway_bus.SUBSCRIBERS), upload_status_subscribers),
    ]
    for target, item in wanted:
        if item not in target:
            target.append(item)
            added.append((target, item))
    publishes = gateway_bus.PUBLISHES
    gateway_bus.PUBLISHES = tuple(dict.fromkeys((*publishes, *UPLOADS_PUBLISHES)))
    try:
        yield
    finally:
        gateway_bus.PUBLISHES = publishes
        for target, item in added:
            target.remove(item)


@contextlib.asynccontextmanager
async def serving(settings: Settings, port: int) -> AsyncIterator[Litestar]:
    """The gateway app (uploads wired) under uvicorn on 127.0.0.1:port."""
    with uploads_wired():
        async with _serve_app(create_app(settings), port) as app:
            yield app


@contextlib.asynccontextmanager
async def _serve_app(app: Litestar, port: int) -> AsyncIterator[Litestar]:
    served = serve_with_gateway_protocol(
        app, port=port, lifespan="on", stop_timeout_s=15, timeout_graceful_shutdown=5
    )
    async with served:
        yield app


@dataclass
class UploadStack:
    url: str
    settings: Settings
    store: ObjectStore
    events: EventLog
    sessions: async_sessionmaker[AsyncSession]
    alice: GatewayUser
    bob: GatewayUser
    uploader: UploaderServices | None
    client: httpx.AsyncClient
    js: JetStreamContext
    extra_urls: list[str] = field(default_factory=list)

    def files(self, upload_id: str = "") -> str:
        return f"{self.url}/files/{upload_id}" if upload_id else f"{self.url}/files/"


class StackFactory:
    def __init__(
        self,
        settings: Settings,
        database_url: str,
        js: Any,
        stores: dict[str, dict[str, Any]],
    ) -> None:
        self._settings = settings
        self._database_url = database_url
        self._js = js
        self._stores = stores
        self._exit = contextlib.AsyncExitStack()

    def _store_settings(self, backend: str) -> dict[str, Any]:
        if backend not in self._stores:
            raise AssertionError(
                f"store {backend!r} not prepared: parametrize the test with backend={backend!r}"
            )
        return self._stores[backend]

    async def start(
        self,
        backend: str,
        *,
        with_uploader: bool = True,
        gateways: int = 1,
        **overrides: Any,
    ) -> UploadStack:
        port = free_port()
        values: dict[str, Any] = {
            "database_url": self._database_url,
            "public_url": f"http://127.0.0.1:{port}",
            "http_port": port,
            "log_level": "WARNING",
            **self._store_settings(backend),
            **overrides,
        }
        settings = msgspec.structs.replace(self._settings, **values)
        app = await self._exit.enter_async_context(serving(settings, port))
        url = settings.public_url
        extra = []
        for _ in range(gateways - 1):
            other = free_port()
            await self._exit.enter_async_context(serving(settings, other))
            extra.append(f"http://127.0.0.1:{other}")
        uploader = None
        if with_uploader:
            uploader = await self._exit.enter_async_context(
                running_uploader(settings, sweep=False, sweep_grace_s=0.0)
            )
        store = create_store(settings)
        self._exit.push_async_callback(store.close)
        engine = create_engine(settings.resolved_database_url)
        self._exit.push_async_callback(engine.dispose)
        events = EventLog()
        await events.start(self._js)
        self._exit.push_async_callback(events.stop)
        client = await self._exit.enter_async_context(httpx.AsyncClient(base_url=url, timeout=60.0))
        alice = user_with_token(app, "alice")
        bob = user_with_token(app, "bob")
        return UploadStack(
            url=url,
            settings=settings,
            store=store,
            events=events,
            sessions=session_factory(engine),
            alice=alice,
            bob=bob,
            uploader=uploader,
            client=client,
            js=self._js,
            extra_urls=extra,
        )

    async def close(self) -> None:
        await self._exit.aclose()


@pytest.fixture(name="store_choices")
def store_choices_fixture(request: pytest.FixtureRequest) -> dict[str, dict[str, Any]]:
    """Settings for each store a test may start: the folder store always, MinIO when
    the test is parametrized with ``backend="s3"``. Sync on purpose: it resolves the
    async ``s3_store`` fixture, which pytest-asyncio cannot do from a running loop."""
    choices: dict[str, dict[str, Any]] = {"local": {"store_backend": "local"}}
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("backend") == "s3":
        s3_store = request.getfixturevalue("s3_store")
        minio = request.getfixturevalue("minio_server")
        choices["s3"] = {
            "store_backend": "s3",
            "s3_endpoint": minio.endpoint,
            "s3_access_key": minio.access_key,
            "s3_secret_key": minio.secret_key,
            "s3_bucket": s3_store.bucket,
            "s3_region": minio.region,
        }
    return choices


@pytest.fixture(name="upload_stack")
async def upload_stack_fixture(
    store_choices: dict[str, dict[str, Any]],
    settings: Settings,
    database_url: str,
    event_streams: JetStreamContext,
) -> AsyncIterator[StackFactory]:
    factory = StackFactory(settings, database_url, event_streams, store_choices)
    try:
        yield factory
    finally:
        await factory.close()


def user_with_token(app: Litestar, name: str) -> GatewayUser:
    """A caller with a valid access token (uploads need a token, not an account row;
    registering costs an Argon2 hash per test)."""
    user_id = str(uuid.uuid4())
    token = app.state.tokens.issue(user_id).token
    return GatewayUser(
        id=user_id,
        username=name,
        email=f"{name}@example.com",
        password="",
        stream_id="",
        token=token,
    )


# --- tus over httpx ------------------------------------------------------------------


async def drained(stack: UploadStack, stream: str, durable: str) -> bool:
    """The durable consumer has been handed everything and acked it all."""
    info = await stack.js.consumer_info(stream, durable)
    return bool(info.num_pending == 0 and info.num_ack_pending == 0)


def auth(user: GatewayUser, **extra: str) -> dict[str, str]:
    return {**TUS, **user.headers, **extra}


async def create(
    stack: UploadStack,
    user: GatewayUser,
    length: int | None,
    *,
    metadata: str | None = None,
    headers: dict[str, str] | None = None,
) -> str:
    """POST /files/; returns the upload id."""
    extra = {"Upload-Length": str(length)} if length is not None else {"Upload-Defer-Length": "1"}
    if metadata is not None:
        extra["Upload-Metadata"] = metadata
    response = await stack.client.post("/files/", headers=auth(user, **extra, **(headers or {})))
    assert response.status_code == 201, response.text
    location = response.headers["location"]
    assert location.startswith(stack.url + "/files/")
    return location.rsplit("/", 1)[1]


async def patch(
    stack: UploadStack,
    user: GatewayUser,
    upload_id: str,
    offset: int,
    data: bytes,
    **headers: str,
) -> httpx.Response:
    return await stack.client.patch(
        f"/files/{upload_id}",
        content=data,
        headers=auth(
            user,
            **{
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
                **headers,
            },
        ),
    )


async def head_offset(stack: UploadStack, user: GatewayUser, upload_id: str) -> int:
    response = await stack.client.head(f"/files/{upload_id}", headers=auth(user))
    assert response.status_code == 200, response.status_code
    return int(response.headers["upload-offset"])


async def upload_all(
    stack: UploadStack,
    user: GatewayUser,
    data: bytes,
    *,
    chunk: int = 8 * MiB,
    metadata: str | None = None,
) -> str:
    upload_id = await create(stack, user, len(data), metadata=metadata)
    offset = 0
    while offset < len(data):
        response = await patch(stack, user, upload_id, offset, data[offset : offset + chunk])
        assert response.status_code == 204, response.text
        offset = int(response.headers["upload-offset"])
    return upload_id


def checksum_header(algorithm: str, data: bytes) -> str:
    import base64

    return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


def meta(**values: str) -> str:
    import base64

    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


# --- raw sockets: cut or hold a PATCH --------------------------------------------------


def _request_head(
    stack: UploadStack,
    user: GatewayUser,
    path: str,
    offset: int,
    content_length: int,
    extra: dict[str, str] | None = None,
) -> bytes:
    host = stack.url.removeprefix("http://")
    lines = [
        f"PATCH {path} HTTP/1.1",
        f"Host: {host}",
        f"Authorization: Bearer {user.token}",
        "Tus-Resumable: 1.0.0",
        "Content-Type: application/offset+octet-stream",
        f"Upload-Offset: {offset}",
        f"Content-Length: {content_length}",
        *(f"{k}: {v}" for k, v in (extra or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _connect(stack: UploadStack) -> socket.socket:
    host, port = stack.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


async def cut_patch(
    stack: UploadStack,
    user: GatewayUser,
    upload_id: str,
    offset: int,
    body: bytes,
    declared: int,
    extra: dict[str, str] | None = None,
) -> None:
    """Send a PATCH announcing ``declared`` bytes, send ``body`` (fewer), then hang up."""

    def run() -> None:
        with _connect(stack) as sock:
            head = _request_head(stack, user, f"/files/{upload_id}", offset, declared, extra)
            sock.sendall(head + body)
            sock.shutdown(socket.SHUT_WR)  # FIN after the bytes: all of them arrive

    await asyncio.to_thread(run)


@contextlib.asynccontextmanager
async def held_patch(
    stack: UploadStack,
    user: GatewayUser,
    upload_id: str,
    offset: int,
    body: bytes = b"",
    declared: int = MiB,
) -> AsyncIterator[socket.socket]:
    """A PATCH that sent its headers (and ``body``) and then waits, holding the lock."""
    sock = await asyncio.to_thread(_connect, stack)
    try:
        head = _request_head(stack, user, f"/files/{upload_id}", offset, declared)
        await asyncio.to_thread(sock.sendall, head + body)
        yield sock
    finally:
        sock.close()


# --- media ---------------------------------------------------------------------------


def make_mp4(width: int = 64, height: int = 48, seconds: float = 1.0, fps: int = 10) -> bytes:
    """A real, tiny H.264 + AAC MP4 made with PyAV."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast"}
        audio = out.add_stream("aac", rate=44100)
        audio.layout = "mono"
        for index in range(int(seconds * fps)):
            frame = av.VideoFrame(width, height, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([(index * 23) % 256]) * plane.buffer_size)
            frame.pts, frame.time_base = index, fractions.Fraction(1, fps)
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        samples = 0
        for _ in range(int(seconds * 44100 / 1024)):
            sound = av.AudioFrame(format="fltp", layout="mono", samples=1024)
            sound.planes[0].update(bytes(sound.planes[0].buffer_size))
            sound.sample_rate, sound.pts = 44100, samples
            samples += 1024
            for packet in audio.encode(sound):
                out.mux(packet)
        for packet in audio.encode():
            out.mux(packet)
    return buffer.getvalue()


def padded_mp4(total_size: int) -> bytes:
    """A real MP4 grown to ``total_size`` bytes by a trailing ``free`` box (ISO/IEC
    14496-12 §8.1.2: demuxers skip it), so size tests need no big encode."""
    video = make_mp4()
    room = total_size - len(video)
    assert room >= 8, "total_size must exceed the bare video by a box header"
    filler = os.urandom(min(room - 8, MiB))
    body = (filler * ((room - 8) // max(len(filler), 1) + 1))[: room - 8]
    return video + struct.pack(">I4s", room, b"free") + body


def _find_box(data: bytes, path: list[bytes], start: int = 0, end: int | None = None) -> int:
    """Offset of the box at ``path`` (e.g. [moov, trak, tkhd]); -1 if absent."""
    end = len(data) if end is None else end
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, offset)
        if size < 8:
            return -1
        if kind == path[0]:
            if len(path) == 1:
                return offset
            inner = offset + 8 + (8 if kind == b"stsd" else 0)
            return _find_box(data, path[1:], inner, offset + size)
        offset += size
    return -1


def forge_dimensions(data: bytes, width: int, height: int) -> bytes:
    """Rewrite the declared size of the first track (tkhd) and its avc1 sample entry."""
    out = bytearray(data)
    tkhd = _find_box(bytes(out), [b"moov", b"trak", b"tkhd"])
    size = struct.unpack_from(">I", out, tkhd)[0]
    struct.pack_into(">II", out, tkhd + size - 8, width << 16, height << 16)
    entry = _find_box(bytes(out), [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd", b"avc1"])
    assert entry > 0, "no avc1 sample entry"
    struct.pack_into(">HH", out, entry + 32, width, height)
    return bytes(out)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
