"""The demo's upload: make a sample clip, send it over tus, follow it until it plays.

The clip is the synthetic pattern (``ingest.synthetic.write_clip``), ~10 s of H.264 +
AAC; it goes through the official tus client (tuspy's async uploader) to ``/files/``
in small chunks so the progress bar moves; then the upload status gives the video id
and the catalog gives the transcode progress, until the video is ready.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Final

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError

from common.demo_api import DemoAPI, DemoError

__all__ = ["UploadResult", "upload_sample"]

CHUNK_SIZE: Final = 256 * 1024
POLL_S: Final = 0.5
VIDEO_ID_TIMEOUT_S: Final = 120.0  # bytes in → the uploader's probe names the video
READY_TIMEOUT_S: Final = 600.0  # the transcoder's ladder on a busy 2-core machine


class UploadResult:
    def __init__(self, video_id: str, ready: bool) -> None:
        self.video_id = video_id
        self.ready = ready


async def upload_sample(
    api: DemoAPI,
    console: Console,
    *,
    seconds: float = 10.0,
    title: str = "VideoPick demo clip",
) -> UploadResult:
    """Make, upload and follow the sample clip; returns once it is ready (or timed out)."""
    from ingest.synthetic import SourceConfig, write_clip

    with tempfile.TemporaryDirectory(prefix="videopick-demo-") as folder:
        path = Path(folder) / "videopick-demo.mp4"
        console.print(f"Making a {seconds:g} s sample clip with PyAV…")
        config = SourceConfig(label="VideoPick demo clip")
        await asyncio.to_thread(write_clip, path, seconds=seconds, config=config)
        size = (await asyncio.to_thread(path.stat)).st_size
        upload_id = await _send(api, console, path, size, title)
    video_id = await _video_id(api, upload_id)
    console.print(f"Uploaded: video [bold]{video_id}[/bold] is transcoding")
    ready = await _follow_transcode(api, console, video_id)
    label = "[green]VIDEO[/green]" if ready else "[yellow]VIDEO (processing)[/yellow]"
    console.print(f"{label}  {api.url(f'/v/{video_id}')}   ({api.since_start()})")
    console.print(f"       HLS: {api.url(f'/vod/{video_id}/master.m3u8')}")
    return UploadResult(video_id, ready)


async def _send(api: DemoAPI, console: Console, path: Path, size: int, title: str) -> str:
    client = TusClient(api.url("/files/"), headers=api.headers)
    uploader = client.async_uploader(
        file_path=str(path),
        chunk_size=CHUNK_SIZE,
        metadata={"filename": path.name, "title": title, "filetype": "video/mp4"},
        retries=3,
        retry_delay=1,
    )
    columns = (
        TextColumn("upload"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("upload", total=size)
            while uploader.offset < size:
                await uploader.upload_chunk()  # type: ignore[no-untyped-call]
                progress.update(task, completed=uploader.offset)
    except TusCommunicationError as exc:
        detail = f" {exc.status_code}" if exc.status_code else ""
        raise DemoError(f"tus upload to {api.url('/files/')} failed{detail}: {exc}") from None
    url = str(uploader.url or "")
    return url.rstrip("/").rsplit("/", 1)[-1]


async def _video_id(api: DemoAPI, upload_id: str) -> str:
    deadline = time.monotonic() + VIDEO_ID_TIMEOUT_S
    while time.monotonic() < deadline:
        status = await api.upload_status(upload_id)
        if status.get("video_id"):
            return str(status["video_id"])
        if status.get("state") in ("rejected", "expired", "cancelled"):
            raise DemoError(f"the upload was {status['state']}: {status.get('reason', '')}")
        await asyncio.sleep(POLL_S)
    raise DemoError(
        f"the upload {upload_id} was not processed in {VIDEO_ID_TIMEOUT_S:.0f} s; "
        "is the uploader component running?"
    )


async def _follow_transcode(api: DemoAPI, console: Console, video_id: str) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    shown = -1
    while time.monotonic() < deadline:
        video = await api.video(video_id)
        if video is not None:
            status = video.get("status")
            if status == "ready":
                console.print("transcode: 100 %")
                return True
            if status == "failed":
                raise DemoError(f"transcoding failed: {video.get('error') or 'no reason given'}")
            percent = int(float(video.get("progress") or 0.0))
            if percent // 10 > shown // 10:
                console.print(f"transcode: {percent} %")
                shown = percent
        await asyncio.sleep(POLL_S)
    console.print(f"still transcoding after {READY_TIMEOUT_S:.0f} s; it will appear when ready")
    return False
