"""VOD delivery (gateway/vod) over ASGI, on both store backends.

Range requests (first bytes, suffix, unsatisfiable), content types, cache lifetimes,
conditional requests, HEAD, and the 404s — traversal included — a hostile client gets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httpx
import msgspec
import pytest
from litestar import Litestar
from litestar.datastructures import State

from common.settings import Settings
from common.store import ObjectStore
from gateway.errors import exception_handlers
from gateway.vod import VOD_STATE_KEY, routers, vod_lifespan

pytestmark = pytest.mark.integration

SEGMENT = bytes(range(256)) * 2400  # 600 KiB: larger than the in-memory limit, so streamed
INIT = b"\x00\x00\x00\x18ftypiso6" + bytes(100)
MASTER = b"#EXTM3U\n#EXT-X-VERSION:7\n"
FILES = {
    "vod/v1/master.m3u8": MASTER,
    "vod/v1/360p/index.m3u8": b'#EXTM3U\n#EXT-X-MAP:URI="init.mp4"\n',
    "vod/v1/360p/init.mp4": INIT,
    "vod/v1/360p/seg_00000.m4s": SEGMENT,
    "vod/v1/poster.jpg": b"\xff\xd8\xff\xe0poster",
    "vod/v1/thumbs/thumb_000.jpg": b"\xff\xd8\xff\xe0thumb",
    "vod/v1/sprite.jpg": b"\xff\xd8\xff\xe0sprite",
    "vod/v1/sprite.vtt": b"WEBVTT\n\n",
    "vod/v1/empty.m4s": b"",
    # Outside any video's prefix: must never be reachable.
    "uploads/u1/source.mp4": b"secret source",
    "vod/v1/360p/notes.txt": b"not a media file",
}
IMMUTABLE = "public, max-age=31536000, immutable"


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    backend: ObjectStore = request.getfixturevalue(f"{request.param}_store")
    return backend


@pytest.fixture
async def client(store: ObjectStore) -> AsyncIterator[httpx.AsyncClient]:
    for key, data in FILES.items():
        await store.put(key, data)
    app = Litestar(
        route_handlers=routers,
        exception_handlers=exception_handlers(),
        state=State({VOD_STATE_KEY: store}),
    )
    transport = httpx.ASGITransport(app=cast(Any, app))
    async with httpx.AsyncClient(transport=transport, base_url="http://vod.test") as http:
        yield http


async def test_master_playlist(client: httpx.AsyncClient) -> None:
    response = await client.get("/vod/v1/master.m3u8")
    assert response.status_code == 200
    assert response.content == MASTER
    assert response.headers["content-type"] == "application/vnd.apple.mpegurl"
    # A recording's master is replaced by its ladder's: always revalidated.
    assert response.headers["cache-control"] == "public, no-cache"
    assert "accept-ranges" not in response.headers
    assert response.headers["etag"].startswith('"')


@pytest.mark.parametrize(
    ("path", "content_type", "cache"),
    [
        ("/vod/v1/360p/index.m3u8", "application/vnd.apple.mpegurl", "public, max-age=60"),
        ("/vod/v1/360p/init.mp4", "video/mp4", IMMUTABLE),
        ("/vod/v1/360p/seg_00000.m4s", "video/mp4", IMMUTABLE),
        ("/vod/v1/poster.jpg", "image/jpeg", IMMUTABLE),
        ("/vod/v1/thumbs/thumb_000.jpg", "image/jpeg", IMMUTABLE),
        ("/vod/v1/sprite.jpg", "image/jpeg", IMMUTABLE),
        ("/vod/v1/sprite.vtt", "text/vtt; charset=utf-8", "public, max-age=60"),
    ],
)
async def test_every_file_type(
    client: httpx.AsyncClient, path: str, content_type: str, cache: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.content == FILES[path.lstrip("/")]
    assert response.headers["content-type"] == content_type
    assert response.headers["cache-control"] == cache
    assert response.headers["content-length"] == str(len(response.content))


async def test_segment_whole_and_ranges(client: httpx.AsyncClient) -> None:
    url = "/vod/v1/360p/seg_00000.m4s"
    size = len(SEGMENT)
    whole = await client.get(url)
    assert whole.status_code == 200
    assert whole.content == SEGMENT
    assert whole.headers["accept-ranges"] == "bytes"

    first = await client.get(url, headers={"Range": "bytes=0-99"})
    assert first.status_code == 206
    assert first.content == SEGMENT[:100]
    assert first.headers["content-range"] == f"bytes 0-99/{size}"
    assert first.headers["content-length"] == "100"
    assert first.headers["content-type"] == "video/mp4"

    suffix = await client.get(url, headers={"Range": "bytes=-100"})
    assert suffix.status_code == 206
    assert suffix.content == SEGMENT[-100:]
    assert suffix.headers["content-range"] == f"bytes {size - 100}-{size - 1}/{size}"

    # A large open-ended range goes down the streaming path.
    tail = await client.get(url, headers={"Range": "bytes=1000-"})
    assert tail.status_code == 206
    assert tail.content == SEGMENT[1000:]
    assert tail.headers["content-length"] == str(size - 1000)

    clamped = await client.get(url, headers={"Range": f"bytes={size - 10}-{size + 1000}"})
    assert clamped.status_code == 206
    assert clamped.content == SEGMENT[-10:]


async def test_unsatisfiable_range_is_416_problem(client: httpx.AsyncClient) -> None:
    size = len(SEGMENT)
    response = await client.get(
        "/vod/v1/360p/seg_00000.m4s", headers={"Range": f"bytes={size}-{size + 10}"}
    )
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{size}"
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 416
    assert str(size) in body["detail"]

    empty = await client.get("/vod/v1/empty.m4s", headers={"Range": "bytes=0-"})
    assert empty.status_code == 416
    assert empty.headers["content-range"] == "bytes */0"


async def test_multi_range_and_garbage_serve_the_whole_file(client: httpx.AsyncClient) -> None:
    for header in ("bytes=0-1,5-6", "bytes=abc", "pages=1-2"):
        response = await client.get("/vod/v1/360p/init.mp4", headers={"Range": header})
        assert response.status_code == 200, header
        assert response.content == INIT


async def test_playlists_ignore_range(client: httpx.AsyncClient) -> None:
    response = await client.get("/vod/v1/master.m3u8", headers={"Range": "bytes=0-3"})
    assert response.status_code == 200
    assert response.content == MASTER


async def test_head_has_headers_and_no_body(client: httpx.AsyncClient) -> None:
    response = await client.head("/vod/v1/360p/seg_00000.m4s")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(len(SEGMENT))
    assert response.headers["content-type"] == "video/mp4"
    ranged = await client.head("/vod/v1/360p/seg_00000.m4s", headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206
    assert ranged.headers["content-length"] == "10"


async def test_conditional_requests(client: httpx.AsyncClient) -> None:
    url = "/vod/v1/360p/seg_00000.m4s"
    etag = (await client.get(url)).headers["etag"]
    cached = await client.get(url, headers={"If-None-Match": etag})
    assert cached.status_code == 304
    assert cached.content == b""
    assert cached.headers["etag"] == etag
    assert (await client.get(url, headers={"If-None-Match": '"other"'})).status_code == 200

    same = await client.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert same.status_code == 206
    changed = await client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert changed.status_code == 200  # the file changed: the whole new file
    assert changed.content == SEGMENT


@pytest.mark.parametrize(
    "path",
    [
        "/vod/nope/master.m3u8",
        "/vod/v1/720p/index.m3u8",
        "/vod/v1/360p/seg_99999.m4s",
        "/vod/v1/360p/notes.txt",  # stored, but not a type we serve
        "/vod/v1/.hidden.m4s",
        "/vod/v1/360p/..%2F..%2F..%2Fuploads%2Fu1%2Fsource.mp4",
        "/vod/..%2Fuploads/u1/source.mp4",
        "/vod/%2E%2E/uploads/source.mp4",
        "/vod/v1/%2E%2E/master.m3u8",
        "/vod/v1/360p/seg_00000.m4s%00.jpg",
        "/vod/v1/a/b/c/seg.m4s",
        "/vod/v1",
        "/vod/" + "x" * 200 + "/master.m3u8",
    ],
)
async def test_unknown_and_hostile_paths_are_404_problems(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(httpx.URL(path))
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "secret" not in response.text


async def test_the_store_comes_from_the_lifespan(tmp_path: Path, settings: Settings) -> None:
    local = msgspec.structs.replace(settings, store_backend="local", store_path=tmp_path / "m")
    app = Litestar(
        route_handlers=routers,
        lifespan=[vod_lifespan],
        exception_handlers=exception_handlers(),
        state=State({"settings": local}),
    )
    async with app.lifespan():
        store = app.state[VOD_STATE_KEY]
        assert isinstance(store, ObjectStore)
        await store.put("vod/v9/master.m3u8", MASTER)
        transport = httpx.ASGITransport(app=cast(Any, app))
        async with httpx.AsyncClient(transport=transport, base_url="http://vod.test") as http:
            assert (await http.get("/vod/v9/master.m3u8")).content == MASTER
    assert app.state[VOD_STATE_KEY] is None
