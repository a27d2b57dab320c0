"""The probe's child process: ``python -m uploader.probe.child --size N --demuxer mov …``.

Runs FFmpeg (PyAV) on an untrusted file inside a safety net (RELIABILITY.md, "Media"):

- limits first, before PyAV is even imported: address space (RLIMIT_AS), CPU seconds
  (RLIMIT_CPU → SIGXCPU), no file writes (RLIMIT_FSIZE 0), few descriptors; and, when
  the process may, a network namespace of its own (no interface but loopback-less lo);
- the bytes come from the parent over a pipe (ipc.py), nothing is opened by name:
  ``io_open`` refuses every nested open, ``protocol_whitelist`` names no protocol, and
  ``format_whitelist`` allows only the demuxer sniff.py chose — HLS playlists, ``concat:``,
  ``subfile:``, ``file:`` and the HLS-inside-AVI trick all end in an error;
- declared picture sizes are checked from the container header (boxes.py) before
  FFmpeg opens the file, and FFmpeg's own view after, before any frame is decoded;
- then stream count, duration, and one decoded picture (truncated or corrupt files
  fail here), with one decoder thread.

The parent enforces the wall-clock limit and kills this process when it is over.
Exit status 0 with a verdict frame on stdout, whatever the verdict.
"""

from __future__ import annotations

import argparse
import ctypes
import io
import json
import os
import resource
import sys
from typing import Any, BinaryIO, Final

from uploader.probe.boxes import BoxError, declared_dimensions
from uploader.probe.ipc import ChildChannel
from uploader.probe.sniff import HEAD_BYTES, sniff
from uploader.probe.verdict import Accepted, Code, Rejected, Verdict, to_json

MAX_DIMENSION: Final = 16384  # RELIABILITY.md: ≥ 16384 px is refused
MAX_STREAMS: Final = 16
MAX_PACKETS_TO_FIRST_FRAME: Final = 500
PROBE_SIZE: Final = 32 * 1024 * 1024  # FFmpeg's probesize: bytes read to find streams
ANALYZE_US: Final = 15_000_000  # analyzeduration: media microseconds
_CLONE_NEWNET: Final = 0x40000000


def apply_limits(memory_mb: int, cpu_s: int) -> None:
    megabyte = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb * megabyte, memory_mb * megabyte))
    # Soft limit → SIGXCPU (fatal by default); the hard one a second later → SIGKILL.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def leave_network() -> bool:
    """A network namespace of our own (no usable interface), where permitted."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.unshare(_CLONE_NEWNET) == 0)
    except (OSError, AttributeError):
        return False


class RemoteFile(io.RawIOBase):
    """A seekable, read-only file whose bytes the parent serves."""

    def __init__(self, channel: ChildChannel, size: int) -> None:
        super().__init__()
        self._channel = channel
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}.get(whence)
        if base is None:
            raise OSError(f"unsupported whence {whence}")
        position = base + offset
        if position < 0:
            raise OSError("seek before the start")
        self._pos = position
        return position

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = self._size - self._pos
        size = min(size, self._size - self._pos)
        if size <= 0:
            return b""
        data = self._channel.read_at(self._pos, size)
        self._pos += len(data)
        return data

    def read_at(self, offset: int, size: int) -> bytes:
        if offset >= self._size:
            return b""
        return self._channel.read_at(offset, min(size, self._size - offset))


def _refuse_open(url: str, flags: int, options: dict[str, Any]) -> Any:
    # Any demuxer asking to open a second resource (HLS segments, concat lists,
    # AVI's embedded playlists, DASH) is refused: the probe reads one file only.
    raise PermissionError(f"nested open refused: {url[:80]!r}")


def _check_dimensions(sizes: list[tuple[int, int]], where: str) -> Rejected | None:
    for width, height in sizes:
        if width >= MAX_DIMENSION or height >= MAX_DIMENSION:
            return Rejected(Code.TOO_LARGE_DIMENSIONS, f"{where} declares {width}x{height}")
    return None


def examine(file: RemoteFile, size: int, demuxer_hint: str, max_duration_s: float) -> Verdict:
    container = sniff(file.read_at(0, HEAD_BYTES))
    if container is None or container.demuxer != demuxer_hint:
        return Rejected(Code.NOT_MEDIA, "unrecognised container")
    if container.iso_bmff:
        try:
            sizes = declared_dimensions(file.read_at, size)
        except BoxError as exc:
            return Rejected(Code.CORRUPT, f"box structure: {exc}")
        if (too_big := _check_dimensions(sizes, "the container")) is not None:
            return too_big
    return _open_and_decode(
        file, container.name, container.demuxer, container.whitelist, max_duration_s
    )


def _open_and_decode(
    file: RemoteFile, name: str, demuxer: str, whitelist: str, max_duration_s: float
) -> Verdict:
    import av  # after the limits: FFmpeg's allocations count against them

    av.logging.set_level(av.logging.PANIC)
    options = {
        "protocol_whitelist": "none",
        "format_whitelist": whitelist,
        "probesize": str(PROBE_SIZE),
        "analyzeduration": str(ANALYZE_US),
    }
    try:
        container = av.open(
            file,
            mode="r",
            format=demuxer,
            options=options,
            io_open=_refuse_open,
            buffer_size=256 * 1024,
        )
    except (av.FFmpegError, PermissionError, OSError, ValueError) as exc:
        return Rejected(Code.NOT_MEDIA, f"open: {exc}")
    with container:
        video = _check_streams(container, max_duration_s)
        if isinstance(video, Rejected):
            return video
        problem = _decode_one(container, video)
        if problem is not None:
            return problem
        codec = video.codec_context
        audio = container.streams.audio
        rate = video.average_rate or video.guessed_rate
        return Accepted(
            container=name,
            duration_s=round(_duration(container, video), 3),
            width=codec.width,
            height=codec.height,
            video_codec=codec.name,
            audio_codec=audio[0].codec_context.name if audio else "",
            fps=round(float(rate), 3) if rate else 0.0,
            bit_rate=int(container.bit_rate or 0),
        )


def _check_streams(container: Any, max_duration_s: float) -> Any:
    """The video stream to describe, or why the file is refused (before any decoding)."""
    streams = list(container.streams)
    if len(streams) > MAX_STREAMS:
        return Rejected(Code.TOO_MANY_STREAMS, f"{len(streams)} streams")
    videos = [s for s in container.streams.video if s.codec_context is not None]
    if not videos:
        return Rejected(Code.NO_VIDEO, "no video stream")
    sizes = [(v.codec_context.width, v.codec_context.height) for v in videos]
    if (too_big := _check_dimensions(sizes, "the video stream")) is not None:
        return too_big
    video = videos[0]
    if video.codec_context.width <= 0 or video.codec_context.height <= 0:
        return Rejected(Code.CORRUPT, "no picture size")
    return _check_duration(_duration(container, video), max_duration_s) or video


def _check_duration(duration: float, max_duration_s: float) -> Rejected | None:
    if duration <= 0:
        return Rejected(Code.CORRUPT, "unknown duration")
    if duration > max_duration_s:
        return Rejected(Code.TOO_LONG, f"{duration:.0f} s")
    return None


def _duration(container: Any, video: Any) -> float:
    if container.duration:
        return float(container.duration) / 1_000_000  # AV_TIME_BASE
    if video.duration and video.time_base:
        return float(video.duration * video.time_base)
    return 0.0


def _decode_one(container: Any, video: Any) -> Rejected | None:
    import av

    video.codec_context.thread_count = 1
    video.codec_context.thread_type = "SLICE"
    packets = 0
    try:
        for packet in container.demux(video):
            packets += 1
            if packets > MAX_PACKETS_TO_FIRST_FRAME:
                break
            for _frame in packet.decode():
                return None
        for _frame in video.codec_context.decode(None):  # drain: short files
            return None
    except (av.FFmpegError, ValueError, MemoryError) as exc:
        return Rejected(Code.CORRUPT, f"decode: {exc}")
    return Rejected(Code.CORRUPT, f"no picture decoded in {packets} packets")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m uploader.probe.child")
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--demuxer", required=True)
    parser.add_argument("--max-duration", type=float, required=True)
    parser.add_argument("--memory-mb", type=int, required=True)
    parser.add_argument("--cpu-s", type=int, required=True)
    args = parser.parse_args(argv)
    apply_limits(args.memory_mb, args.cpu_s)
    leave_network()
    to_parent: BinaryIO = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but frames may reach the pipe
    channel = ChildChannel(to_parent, sys.stdin.buffer)
    file = RemoteFile(channel, args.size)
    try:
        verdict = examine(file, args.size, args.demuxer, args.max_duration)
    except MemoryError:
        verdict = Rejected(Code.UNREADABLE, "memory limit")
    channel.send_result(json.dumps(to_json(verdict)).encode())
    return 0


if __name__ == "__main__":
    os._exit(main())  # no interpreter teardown: FFmpeg state dies with the process
