"""A live recording is a video at once, then the transcoder's ladder replaces its master.

ffmpeg publishes to the real RTMP ingest (the setup of ``test_live_reconnect``: real
nats-server, folder store); when it unpublishes, ``/vod/{video_id}/master.m3u8`` at the
gateway is a master playlist whose one variant is the broadcast's own segments: it
parses with ``m3u8`` and every segment it names decodes with PyAV, and the catalog
(folded from the event log) has the video ready with the broadcast's title and
description. Then the real transcode worker (``transcode_recordings`` on) encodes a
ladder from ``stream.recorded`` and overwrites the master; the catalog still holds
exactly one video. A republished ``stream.recorded`` or ``video.published`` makes no
second video.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import urljoin, urlsplit

import httpx
import m3u8
import msgspec
import pytest
from litestar import Litestar
from litestar.datastructures import State
from PIL import Image

from common.db import migrate
from common.settings import Settings
from events.catalog import (
    StreamRecorded,
    StreamSegment,
    TranscodeCompleted,
    VideoPublished,
    decode_event,
)
from events.envelope import new_event_id
from events.replay import iter_stored
from events.streams import ACCOUNTS, LIVE_MEDIA, MEDIA, STREAMS
from gateway.errors import exception_handlers
from gateway.live import routers as live_routers
from gateway.projections.reducer import CatalogState, apply_event
from gateway.vod import VOD_STATE_KEY
from gateway.vod import routers as vod_routers
from tests.integration.llhls_checks import (
    check_media,
    check_recording_playlist,
    decoded_video_frames,
)
from tests.integration.test_live_reconnect import (  # noqa: F401 (fixtures)
    DEADLINE_S,
    FRAME_S,
    Live,
    add_channel,
    ffmpeg,
    live_settings,
    make_live,
    stop,
    until,
)
from transcoder.bus import create_broker
from transcoder.worker import TranscodeWorker

pytestmark = pytest.mark.integration

TRANSCODE_DEADLINE_S = 120.0  # two shared cores, other engineers' jobs beside ours


@contextlib.asynccontextmanager
async def gateway_http(live: Live) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway's live and VOD delivery over the store ingest writes to."""
    app = Litestar(
        route_handlers=[*live_routers, *vod_routers],
        exception_handlers=exception_handlers(),
        state=State({"live": live.gateway, VOD_STATE_KEY: live.packaging.store}),
    )
    transport = httpx.ASGITransport(app=cast(Any, app))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        yield http


async def get(http: httpx.AsyncClient, url: str) -> httpx.Response:
    response = await http.get(url)
    assert response.status_code == 200, f"{url}: {response.status_code} {response.text[:200]}"
    return response


async def catalog_of(live: Live, stream_id: str, video_id: str) -> CatalogState:
    """The catalog's fold over everything the log holds for this channel and video."""
    catalog = CatalogState()
    for stream, subject in (
        (ACCOUNTS.name, f"*.*.{stream_id}"),
        (STREAMS.name, f"*.*.{stream_id}"),
        (MEDIA.name, f"*.*.{video_id}"),
    ):
        async for message in iter_stored(live.js, subject, stream=stream):
            apply_event(catalog, decode_event(message.data))
    return catalog


@contextlib.asynccontextmanager
async def transcoder(settings: Settings) -> AsyncIterator[TranscodeWorker]:
    worker = TranscodeWorker(settings)
    broker = create_broker(settings, worker=worker)
    await worker.start()
    await broker.start()
    try:
        yield worker
    finally:
        await worker.stop()
        await broker.stop()


async def test_a_recording_plays_at_once_and_its_ladder_replaces_it(
    make_live: Callable[[float], Any],  # noqa: F811
    live_settings: Callable[[float], Settings],  # noqa: F811
    tmp_path: Path,
) -> None:
    live: Live = await make_live(0.0)
    stream_id, key = await add_channel(live)
    publisher = await ffmpeg(live.url(key), seconds=4)
    await stop(publisher, kill=False)
    await live.packaging.wait_ended(stream_id, DEADLINE_S)

    (recorded,) = await until(
        lambda: live.stored(StreamRecorded, STREAMS.name, stream_id), "stream.recorded"
    )
    video_id = recorded.video_id
    (published,) = await until(
        lambda: live.stored(VideoPublished, MEDIA.name, video_id), "video.published"
    )
    assert published.master_key == f"vod/{video_id}/master.m3u8"
    assert (published.origin, published.stream_id) == ("recording", stream_id)
    assert (published.width, published.height) == (320, 240)
    # The broadcast's last live thumbnail (every 2 s here) is its poster meanwhile.
    assert published.poster_key == f"vod/{video_id}/live-poster.jpg"
    segments = await live.stored(StreamSegment, LIVE_MEDIA.name, stream_id)

    master_url = f"http://gw/vod/{video_id}/master.m3u8"
    async with gateway_http(live) as http:
        # Right after stream.recorded: a master with the recording as its one variant.
        response = await get(http, master_url)
        assert response.headers["content-type"].startswith("application/vnd.apple.mpegurl")
        assert response.headers["cache-control"] == "public, no-cache"
        master = m3u8.M3U8(response.text, strict=True)
        assert master.is_variant
        (variant,) = master.playlists
        info = variant.stream_info
        assert info.resolution == (320, 240)
        assert info.codecs is not None
        assert info.codecs.startswith("avc1.")
        assert "mp4a.40." in info.codecs
        seconds = sum(s.duration_s for s in segments)
        average = sum(s.byte_size for s in segments) * 8 / seconds
        assert info.average_bandwidth == pytest.approx(average, rel=0.01)
        assert info.bandwidth is not None
        assert info.bandwidth >= info.average_bandwidth

        media_url = urljoin(master_url, variant.uri)
        assert urlsplit(media_url).path == f"/{recorded.playlist_key}"
        vod = check_recording_playlist((await get(http, media_url)).text)
        assert len(vod.segment_uris) == len(segments)
        assert vod.segments_s == pytest.approx(recorded.duration_s, abs=FRAME_S)

        async def fetch(uri: str) -> bytes:
            return (await get(http, urljoin(media_url, uri))).content

        # The live segments themselves (no copy): every one decodes after the init.
        assert await check_media(vod, "init.mp4", fetch) >= 30 * 3

        catalog = await catalog_of(live, stream_id, video_id)
        (video,) = catalog.videos.values()
        assert (video.video_id, video.status) == (video_id, "ready")
        assert (video.title, video.description) == ("Two halves", "dropped once")
        assert (video.origin, video.stream_id) == ("recording", stream_id)
        assert video.master_key == published.master_key
        assert catalog.channels[stream_id].poster_video_id == video_id
        poster = await get(http, f"/vod/{video_id}/live-poster.jpg")
        assert poster.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(poster.content)).size == (320, 240)
        first_published_at = video.published_at

        # A redelivered or republished copy makes no second video.
        await live.publisher.publish(recorded)
        await live.publisher.publish(published)  # same event id: JetStream drops it
        await live.publisher.publish(recorded.with_envelope(event_id=new_event_id()))
        assert len(await live.stored(VideoPublished, MEDIA.name, video_id)) == 1
        catalog = await catalog_of(live, stream_id, video_id)
        assert list(catalog.videos) == [video_id]

        # The transcoder's ladder replaces the master; still one video, still ready.
        url = f"sqlite+aiosqlite:///{tmp_path / 'transcoder.db'}"
        await migrate(url)
        settings = msgspec.structs.replace(
            live_settings(0.0),
            database_url=url,
            store_backend="local",
            store_path=tmp_path / "media",  # the local_store fixture's folder
            transcode_recordings=True,
            transcode_ladder=("240p:400",),
            transcode_thumbnails=1,
        )
        async with transcoder(settings):
            await until(
                lambda: live.stored(TranscodeCompleted, MEDIA.name, video_id),
                "transcode.completed",
                TRANSCODE_DEADLINE_S,
            )
            # The copy with a new id reached the worker too: still one job's events.
            both = await until(
                lambda: _at_least(live.stored(VideoPublished, MEDIA.name, video_id), 2),
                "the ladder's video.published",
                TRANSCODE_DEADLINE_S,
            )
        assert len(both) == 2
        assert len(await live.stored(TranscodeCompleted, MEDIA.name, video_id)) == 1
        ladder = m3u8.M3U8((await get(http, master_url)).text, strict=True)
        assert [p.uri for p in ladder.playlists] != [variant.uri]
        rendition_url = urljoin(master_url, ladder.playlists[0].uri)
        assert urlsplit(rendition_url).path.startswith(f"/vod/{video_id}/")
        rendition = m3u8.M3U8((await get(http, rendition_url)).text, strict=True)
        init_uri = rendition.segment_map[0].uri
        first = rendition.segments[0].uri
        init = (await get(http, urljoin(rendition_url, init_uri))).content
        media = (await get(http, urljoin(rendition_url, first))).content
        assert decoded_video_frames(init, media) > 0

        catalog = await catalog_of(live, stream_id, video_id)
        (video,) = catalog.videos.values()
        assert video.status == "ready"
        assert (video.title, video.description) == ("Two halves", "dropped once")
        assert video.master_key == f"vod/{video_id}/master.m3u8"
        assert video.poster_key == f"vod/{video_id}/poster.jpg"  # the ladder's own
        assert video.published_at == first_published_at  # an update, not a new video


async def _at_least(events: Any, count: int) -> list[VideoPublished] | None:
    found = cast(list[VideoPublished], await events)
    return found if len(found) >= count else None
