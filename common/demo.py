"""``videopick demo``: a live channel and a playable video on a fresh platform, in a minute.

Against a running platform (``make run``), through its public interface only:

1. log in as the demo account, registering it the first time;
2. set the broadcast's title, then publish a synthetic live stream over RTMP (a moving
   test pattern with the clock burned in and a tone, ``ingest.synthetic_live``);
3. meanwhile make a ~10 s sample clip and upload it over tus, then follow its
   transcode (``common.demo_upload``);
4. print the watch URLs; at ``--duration`` or Ctrl-C, ``POST /api/v2/streams/stop``
   (ingest disconnects us and ends the broadcast at once, so its recording becomes a
   video), and exit once the upload is done.

Exit status: 0 when everything it started ended well, 1 with a one-line ``error: …``
otherwise (no gateway, a refused key, a failed transcode).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import time
from dataclasses import dataclass
from typing import Final, TypeVar

from rich.console import Console

from common.demo_api import DemoAPI, DemoError
from common.demo_upload import upload_sample

__all__ = ["DemoOptions", "run_demo"]

TITLE: Final = "VideoPick demo: test pattern, clock and tone"
DESCRIPTION: Final = (
    "A synthetic live stream from videopick demo: colour bars, a bouncing square, the "
    "UTC clock to the millisecond (compare it with yours to see the latency) and a beep "
    "every second."
)
STOP_GRACE_S: Final = 5.0  # after POST /stop, how long ingest gets to hang up on us
LIVE_TIMEOUT_S: Final = 60.0  # publishing → the catalog says live (a cooldown is ~15 s)
# A stop request cools the channel down (ingest refuses publishes for ~15 s); a demo
# run right after the last one waits that out instead of failing.
_COOLING: Final = re.compile(r"resumes in (\d+) s")
MAX_COOLDOWN_WAITS: Final = 3
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class DemoOptions:
    gateway: str = "http://localhost:8080"
    rtmp: str | None = None  # rtmp://host:port/live; default: what the gateway advertises
    duration_s: float | None = None  # None: until Ctrl-C
    upload: bool = True
    username: str = "demo"
    password: str = "videopick-demo"  # noqa: S105 - a demo account on a local platform


def run_demo(options: DemoOptions, console: Console | None = None) -> int:
    """Run the demo to its end; returns the exit status."""
    console = console or Console(highlight=False, soft_wrap=True)
    try:
        return asyncio.run(_demo(options, console))
    except DemoError as exc:
        errors = Console(stderr=True, highlight=False, soft_wrap=True)
        errors.print(f"[red]error:[/red] {exc}")
        return 1
    except KeyboardInterrupt:  # Ctrl-C before our handler was installed
        return 130


async def _demo(options: DemoOptions, console: Console) -> int:
    interrupted = asyncio.Event()  # Ctrl-C or SIGTERM
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted.set)
    try:
        async with DemoAPI(options.gateway) as api:
            return await _run(api, options, console, interrupted)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _run(
    api: DemoAPI, options: DemoOptions, console: Console, interrupted: asyncio.Event
) -> int:
    email = f"{options.username}@videopick.example"
    created = await api.sign_in(options.username, email, options.password)
    verb = "Registered" if created else "Logged in as"
    console.print(f"{verb} [bold]{options.username}[/bold] (password: {options.password})")
    key = await api.stream_key()
    await api.start(TITLE, DESCRIPTION)
    rtmp_base = (options.rtmp or key.rtmp_url).rstrip("/")
    target = f"{rtmp_base}/{key.stream_key}"
    console.print(f"Publishing a synthetic live stream to {rtmp_base}/<stream key>")

    unpublish = asyncio.Event()  # hang up ourselves (ingest did not, or Ctrl-C in a wait)
    live = asyncio.create_task(_publish(target, unpublish, interrupted, console), name="live")
    announce = asyncio.create_task(_announce_live(api, console, key.stream_id), name="announce")
    upload: asyncio.Task[object] | None = None
    if options.upload:
        upload = asyncio.create_task(upload_sample(api, console), name="demo-upload")
        upload.add_done_callback(_report_failure)
    try:
        await _wait_for_end(live, interrupted, options.duration_s)
        if live.done():
            live.result()  # the publisher failed: raise its error
        console.print("Stopping the live stream…")
        await _stop_live(api, live, unpublish)
        if upload is not None and not interrupted.is_set():
            await _until_done_or(upload, interrupted)  # the clip's transcode
    finally:
        for task in (live, announce, upload):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, DemoError):
                    await task
    failed = upload is not None and not upload.cancelled() and upload.exception() is not None
    console.print("Demo finished." if not failed else "Demo finished; the upload failed.")
    return 1 if failed else 0


def _report_failure(task: asyncio.Task[object]) -> None:
    """Say at once when the upload fails, even while the live goes on."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        Console(stderr=True, highlight=False, soft_wrap=True).print(f"[red]error:[/red] {exc}")


async def _publish(
    url: str, unpublish: asyncio.Event, interrupted: asyncio.Event, console: Console
) -> None:
    from ingest.rtmp_publisher import PublisherError, PublishRefusedError
    from ingest.synthetic_live import publish_synthetic

    for _attempt in range(MAX_COOLDOWN_WAITS + 1):
        try:
            await publish_synthetic(url, stop=unpublish)
            return
        except PublishRefusedError as exc:
            cooling = _COOLING.search(exc.description)
            if cooling is None:
                raise DemoError(f"the RTMP server refused the stream: {exc}") from None
            wait_s = int(cooling.group(1)) + 1
            console.print(f"The channel was just stopped; publishing again in {wait_s} s…")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(interrupted.wait(), wait_s)
            if interrupted.is_set() or unpublish.is_set():
                return
        except PublisherError as exc:
            raise DemoError(str(exc)) from None
    raise DemoError("the RTMP server kept refusing the stream (the channel is cooling down)")


async def _announce_live(api: DemoAPI, console: Console, stream_id: str) -> None:
    """Print the watch URLs once the catalog lists the channel as live."""
    deadline = time.monotonic() + LIVE_TIMEOUT_S
    while time.monotonic() < deadline:
        channel = await api.channel(stream_id)
        if channel.get("live"):
            watch = api.url(f"/watch/{stream_id}")
            console.print(f"[green]LIVE[/green]   {watch}   ({api.since_start()})")
            console.print(f"       HLS: {api.url(f'/live/{stream_id}/index.m3u8')}")
            return
        await asyncio.sleep(0.5)
    console.print(f"the channel is not live after {LIVE_TIMEOUT_S:.0f} s; see the ingest log")


async def _wait_for_end(
    live: asyncio.Task[None], interrupted: asyncio.Event, duration: float | None
) -> None:
    """Until Ctrl-C, the duration, or the publisher ending on its own (an error)."""
    await _until_done_or(live, interrupted, within_s=duration)


async def _stop_live(api: DemoAPI, live: asyncio.Task[None], unpublish: asyncio.Event) -> None:
    """``POST /streams/stop``: ingest ends the broadcast and hangs up; we wait for that."""
    from ingest.rtmp_publisher import PublisherClosedError

    # A gateway gone by now must not keep us: hang up below all the same.
    with contextlib.suppress(DemoError, TimeoutError):
        async with asyncio.timeout(STOP_GRACE_S):
            await api.stop()
    done, _ = await asyncio.wait({live}, timeout=STOP_GRACE_S)
    if not done:
        unpublish.set()  # ingest did not hang up: unpublish ourselves
    with contextlib.suppress(DemoError, PublisherClosedError, asyncio.CancelledError):
        await live


async def _until_done_or(
    task: asyncio.Task[_T], event: asyncio.Event, *, within_s: float | None = None
) -> None:
    """Wait for ``task`` to finish, ``event`` to be set, or ``within_s``: whichever first."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({task, waiter}, timeout=within_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
