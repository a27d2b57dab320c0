"""hls.js in headless Chromium plays a live stream published with the ffmpeg CLI.

The real chain: ffmpeg (x264 + AAC, 1 s keyframes) → ``python -m ingest`` (RTMP) →
fMP4 parts in the store and ``stream.part`` on JetStream → ``python -m gateway`` (LL-HLS
with blocking reload) → hls.js (npm, pinned by tests/live_harness/package-lock.json) in
Debian's Chromium, on a page served from another 127.0.0.1 origin the gateway's CORS
allows.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext

from common.settings import Settings
from tests.integration.live_stack import (
    chromium,
    ffmpeg_publish,
    player_stack,
    register_streamer,
    stop_process,
    wait_playlist,
)

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

PLAY_DEADLINE_S = 45.0
ADVANCE_S = 2.0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_hls_js_plays_the_live_stream_with_low_latency(
    gateway_settings: Settings, event_streams: JetStreamContext, tmp_path: Path
) -> None:
    with player_stack(gateway_settings, tmp_path) as (origin, gateway_url, ingester):
        streamer = await register_streamer(gateway_url, gateway_settings, "browser_streamer")
        # 640x360 keeps the encoder light on a shared machine; the chain is the same.
        publisher = ffmpeg_publish(
            f"rtmp://127.0.0.1:{ingester.port}/live/{streamer.stream_key}",
            tmp_path / "ffmpeg.log",
            size="640x360",
            seconds=PLAY_DEADLINE_S + 15,
        )
        try:
            playlist_url = f"{gateway_url}/live/{streamer.stream_id}/index.m3u8"
            playlist = await wait_playlist(playlist_url)
            assert "#EXT-X-PART:" in playlist
            assert "CAN-BLOCK-RELOAD=YES" in playlist
            async with chromium() as browser:
                page = await browser.new_page()
                console: list[str] = []
                page.on("console", lambda message: console.append(message.text))
                await page.goto(f"{origin}/index.html?src={playlist_url}")
                first, last = await _play(page)
            advanced = last["currentTime"] - first["currentTime"]
            assert advanced >= ADVANCE_S, (first, last, console)
            assert last["lowLatencyMode"] is True
            latency = last["latency"]
            assert isinstance(latency, int | float), last
            assert 0 < latency < 10, last
            print(f"\nhls.js: played {advanced:.2f} s of the live stream; latency {latency:.3f} s")
            assert publisher.poll() is None, (tmp_path / "ffmpeg.log").read_text()
        finally:
            stop_process(publisher)


async def _play(page: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """First sample once playback has started, and the one ≥ ADVANCE_S of media later."""
    deadline = time.monotonic() + PLAY_DEADLINE_S
    first: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        sample: dict[str, Any] = await page.evaluate("window.live.sample()")
        if first is None and sample["currentTime"] > 0 and not sample["paused"]:
            first = sample
        if first is not None and sample["currentTime"] - first["currentTime"] >= ADVANCE_S + 0.5:
            return first, sample
        await asyncio.sleep(0.25)
    raise AssertionError(f"playback did not advance {ADVANCE_S} s: first={first}, last={sample}")
