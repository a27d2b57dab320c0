"""tus upload throughput: our gateway against tusd, with ``cp`` as the physical reference.

    make bench        # or: .venv/bin/pytest -m bench tests/bench/bench_tus.py -s

One file of random bytes (``VIDEOPICK_TEST_BENCH_MIB``, default 1024) is uploaded in
8 MiB chunks by tuspy (in its own process, as in real life) to:

- ours: ``python -m gateway`` (the real server process) on the folder store. Every
  chunk is durable (written, fsynced, renamed, folder fsynced) before its 204; its
  ``chunk.uploaded`` goes to JetStream right after (the last chunk's before), and the
  upload's lock passes from one PATCH to the next (gateway/tus/settling.py).
  ``VIDEOPICK_TEST_BENCH_TUS_DB=postgresql`` runs the catalog on PostgreSQL;
- tusd v2.9.1 with its filestore, in a folder on the same disk. tusd writes each chunk
  into the upload's file and answers without fsync (it has no option for it): its 204
  means "in the page cache". For a durable comparison the table also shows tusd plus
  one fsync of the finished file (durable at the end only, still not per chunk);
- the floor: ``tests/bench/tus_floor.py``, a bare durable receiver (a thread per
  connection, the folder store's own O_DIRECT writer, fsync, rename and the folder's
  fsync before each 204, one file per chunk; no framework, auth, database, lock or
  events). What it reaches against tusd is what a durable server can reach with this
  client on this disk; the rest of the gap is ours. It also times the client's
  turnaround (from an answer to the next PATCH's first byte);
- ``cp`` of the same file on the same disk, and ``cp`` plus one fsync;
- ``dd bs=8M oflag=dsync``: each 8 MiB written durably before the next through the page
  cache, and ``oflag=direct,dsync`` around it as our folder store writes (O_DIRECT,
  ``common/store/_appender.py``): the disk's own ceiling for what our side promises
  (no network, no HTTP, no database, no events);
- the ceiling: ``dd oflag=direct,dsync``'s time plus the client's turnaround, as the
  floor measured it. Every chunk must be on the disk before its answer, and the next
  chunk comes only a turnaround after that answer, so the disk idles for the
  turnaround once per chunk: no durable server can upload faster than this, even with
  the network time fully hidden behind the disk's. Where it is below tusd, the goal of
  1.0x tusd with every chunk durable is out of reach on this machine.

The source file is read once first so every side starts with it in the page cache.
Rounds (``VIDEOPICK_TEST_BENCH_ROUNDS``, default 3) rotate who goes first; medians are
printed with the ratios ours / tusd. The uploader is not running: the figure is the
gateway's ingest alone. ``VIDEOPICK_TEST_BENCH_TUS_UPLOADER=1`` runs ``python -m
uploader`` beside it, as ``videopick up`` does (it records every chunk and, once an
upload is complete, assembles, hashes and probes it): each of our rounds then also
waits, outside the timing, until the uploader has given its verdict.

Beside the rates, the CPU each tus side spent per MiB (median over the rounds): the
server's process (ours: the gateway, plus the nats-server its events go through, and
the uploader when it runs) and the tuspy client's. On this 2-core machine the client
and the server share the cores, so a server's CPU is throughput the client loses.

A second benchmark uploads the same way to MinIO (ours only: S3 parts, no fsync of
ours to count; MinIO does its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import msgspec
import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from common.nats_server import NatsServerProcess, free_port
from common.settings import Settings
from common.store.local import MULTIPART_DIR
from ingest.rtmp.bench import cpu_seconds
from tests.bench.procs import listening_pid
from tests.fixtures.gateway import GatewayUser, gateway_env, gateway_process, register_user
from tests.integration.live_stack import stop_process
from tests.integration.test_tus_fixtures import (
    MiB,
    StackFactory,
    head_offset,
    store_choices_fixture,  # noqa: F401 - fixture
    upload_stack_fixture,  # noqa: F401 - fixture
)

pytestmark = [pytest.mark.integration, pytest.mark.bench]

SIZE = int(os.environ.get("VIDEOPICK_TEST_BENCH_MIB", "1024")) * MiB
ROUNDS = int(os.environ.get("VIDEOPICK_TEST_BENCH_ROUNDS", "3"))
CHUNK = 8 * MiB
DB_ENV = "VIDEOPICK_TEST_BENCH_TUS_DB"
WITH_UPLOADER = os.environ.get("VIDEOPICK_TEST_BENCH_TUS_UPLOADER") == "1"
REPO_ROOT = Path(__file__).resolve().parents[2]
TUSD_MODULE = "github.com/tus/tusd/v2/cmd/tusd"
TUSD_VERSION = "v2.9.1"
START_TIMEOUT_S = 30.0
# VIDEOPICK_TEST_BENCH_LOG_LEVEL=INFO: the gateway logs each request's duration.
GATEWAY_ENV = {"VIDEOPICK_LOG_LEVEL": os.environ.get("VIDEOPICK_TEST_BENCH_LOG_LEVEL", "WARNING")}

# tuspy in a process of its own: a thread of pytest's would share the GIL with whatever
# else runs here, and a browser or app is never inside the server either.
CLIENT = """
import sys, time
from tusclient import client
files, token, path, chunk = sys.argv[1:]
headers = {"Authorization": f"Bearer {token}"} if token else {}
tus = client.TusClient(files, headers=headers)
uploader = tus.uploader(file_path=path, chunk_size=int(chunk), metadata={"filename": "b.bin"})
started = time.perf_counter()
uploader.upload()
print(uploader.url, time.perf_counter() - started)
"""


def tuspy_upload(files_url: str, token: str, path: Path) -> tuple[str, float]:
    """Upload ``path``; (its URL, seconds from the first request to the last answer)."""
    result = subprocess.run(
        [sys.executable, "-c", CLIENT, files_url, token, str(path), str(CHUNK)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"tuspy to {files_url} failed:\n{result.stderr[-3000:]}"
    url, seconds = result.stdout.split()
    return url, float(seconds)


def fsync_file(path: Path) -> float:
    started = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - started


def random_file(path: Path, size: int) -> Path:
    block = os.urandom(MiB)
    with path.open("wb") as file:
        for _ in range(size // MiB):
            file.write(block)
    return path


def warm(path: Path) -> None:
    """Read the source once, so no side pays for the first read from disk."""
    with path.open("rb") as file:
        while file.read(16 * MiB):
            pass


def tusd_binary() -> Path:
    """tusd from the project's Go-tool cache, built there (pinned) if missing."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    binary = cache / "videopick" / "bin" / "tusd"
    stamp = binary.with_name("tusd.version")
    if binary.exists() and stamp.exists() and stamp.read_text().strip() == TUSD_VERSION:
        return binary
    result = subprocess.run(
        ["bash", "scripts/install-go-tool.sh", "tusd", f"{TUSD_MODULE}@{TUSD_VERSION}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"could not build tusd (scripts/install-go-tool.sh):\n{result.stderr}")
    return Path(result.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def tusd_server(upload_dir: Path, log_path: Path) -> Iterator[str]:
    """tusd on 127.0.0.1 with its filestore in ``upload_dir``; its /files/ URL."""
    port = free_port()
    upload_dir.mkdir(parents=True, exist_ok=True)
    command = [
        str(tusd_binary()),
        "-host=127.0.0.1",
        f"-port={port}",
        f"-upload-dir={upload_dir}",
        "-base-path=/files/",
    ]
    with tus_peer("tusd", command, f"http://127.0.0.1:{port}/files/", log_path) as url:
        yield url


@contextlib.contextmanager
def floor_server(folder: Path, log_path: Path) -> Iterator[str]:
    """``tests/bench/tus_floor.py`` on 127.0.0.1, storing in ``folder``; its /files/ URL."""
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "tests.bench.tus_floor", str(port), str(folder)]
    with tus_peer("the floor", command, f"http://127.0.0.1:{port}/files/", log_path) as url:
        yield url


@contextlib.contextmanager
def tus_peer(name: str, command: list[str], url: str, log_path: Path) -> Iterator[str]:
    """``command``, a tus server at ``url``, from its first answer to the block's end."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited:\n{log_path.read_text()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    httpx.options(url, timeout=1.0)  # any answer: it serves
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} not ready:\n{log_path.read_text()[-2000:]}")
                time.sleep(0.05)  # polling its readiness, bounded by the deadline
            yield url
        finally:
            stop_process(process)


@contextlib.contextmanager
def uploader_process(settings: Settings, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m uploader`` on the gateway's settings."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uploader"],
            cwd=REPO_ROOT,
            env=gateway_env(settings, 0),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            stop_process(process)


async def fetching_chunks(js: JetStreamContext, process: subprocess.Popen[bytes]) -> None:
    """Until the uploader's chunk consumers wait for messages."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        assert process.poll() is None, "the uploader exited (uploader.log says why)"
        with contextlib.suppress(NotFoundError):
            durables = ("uploader-chunks", "uploader-progress")
            infos = [await js.consumer_info("UPLOADS", durable) for durable in durables]
            if all(info.num_waiting for info in infos):
                return
        assert time.monotonic() < deadline, "the uploader never fetched its chunks"
        await asyncio.sleep(0.1)


async def verdict(http: httpx.AsyncClient, user: GatewayUser, upload_id: str) -> str:
    """The upload's final state, once the uploader has given it."""
    deadline = time.monotonic() + 300.0
    while True:
        response = await http.get(f"/api/v2/upload/{upload_id}", headers=user.headers)
        state = str(response.json()["state"])
        if state not in ("uploading", "processing"):
            return state
        assert time.monotonic() < deadline, f"no verdict on {upload_id}: {state}"
        await asyncio.sleep(0.2)


def rate(seconds: float) -> float:
    return SIZE / seconds / 1e6


def children_cpu_seconds() -> float:
    """CPU of this process's finished children (each tuspy client, once it is waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuMeter:
    """CPU milliseconds per MiB, per side: its server processes' and its client's."""

    servers: dict[str, list[int]]
    server_ms: dict[str, list[float]] = field(default_factory=dict)
    client_ms: dict[str, list[float]] = field(default_factory=dict)

    async def measure(self, side: str, run: Callable[[], Awaitable[None]]) -> None:
        pids = self.servers[side]
        server, client = sum(cpu_seconds(pid) for pid in pids), children_cpu_seconds()
        await run()
        server = sum(cpu_seconds(pid) for pid in pids) - server
        client = children_cpu_seconds() - client
        self.server_ms.setdefault(side, []).append(server * 1000 / (SIZE / MiB))
        self.client_ms.setdefault(side, []).append(client * 1000 / (SIZE / MiB))

    def print_table(self) -> None:
        print("  CPU ms per MiB (median)          server  client")
        for side in self.servers:
            server = statistics.median(self.server_ms[side])
            client = statistics.median(self.client_ms[side])
            print(f"  {side:<32} {server:>7.2f} {client:>7.2f}")


def server_pid(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None, url
    return listening_pid(port)


# The embedded default; VIDEOPICK_TEST_BENCH_TUS_DB=postgresql for the production shape.
@pytest.mark.parametrize("database_url", [os.environ.get(DB_ENV, "sqlite")], indirect=True)
async def test_tus_throughput_against_tusd_and_cp(
    gateway_settings: Settings,
    event_streams: JetStreamContext,
    nats_server: NatsServerProcess,
    tmp_path: Path,
) -> None:
    source = random_file(tmp_path / "source.bin", SIZE)
    await asyncio.to_thread(warm, source)
    # Everything on the same disk: our store (data_dir), tusd's folder, cp's target.
    assert gateway_settings.data_dir.is_relative_to(tmp_path)
    settings = msgspec.structs.replace(gateway_settings, tus_max_size=4 * SIZE)
    seconds: dict[str, list[float]] = {
        "ours": [],
        "tusd": [],
        "tusd_fsync": [],
        "floor": [],
        "ceiling": [],
        "cp": [],
        "cp_fsync": [],
        "dd_dsync": [],
        "dd_direct": [],
    }
    turnaround: list[float] = []  # the floor's clients', per round
    tusd_dir = tmp_path / "tusd"
    multipart_dir = settings.resolved_store_path / MULTIPART_DIR
    with (
        gateway_process(settings, tmp_path / "gateway.log", GATEWAY_ENV) as gateway_url,
        tusd_server(tusd_dir, tmp_path / "tusd.log") as tusd_url,
        floor_server(tmp_path / "floor", tmp_path / "floor.log") as floor_url,
    ):
        async with contextlib.AsyncExitStack() as stack:
            assert nats_server.pid is not None
            ours_pids = [server_pid(gateway_url), nats_server.pid]
            if WITH_UPLOADER:
                log = tmp_path / "uploader.log"
                uploader = stack.enter_context(uploader_process(settings, log))
                ours_pids.append(uploader.pid)
                await fetching_chunks(event_streams, uploader)
            cpu = CpuMeter(
                {
                    "ours": ours_pids,
                    "tusd": [server_pid(tusd_url)],
                    "floor": [server_pid(floor_url)],
                }
            )
            http = await stack.enter_async_context(
                httpx.AsyncClient(base_url=gateway_url, timeout=60.0)
            )
            user = await register_user(http, "bench")

            async def ours() -> None:
                url, elapsed = await asyncio.to_thread(
                    tuspy_upload, f"{gateway_url}/files/", user.token, source
                )
                upload_id = url.rsplit("/", 1)[1]
                headers = {"Tus-Resumable": "1.0.0", **user.headers}
                head = await http.head(f"/files/{upload_id}", headers=headers)
                assert int(head.headers["upload-offset"]) == SIZE
                seconds["ours"].append(elapsed)
                if WITH_UPLOADER:  # random bytes are no media
                    assert await verdict(http, user, upload_id) == "rejected"
                # A complete upload cannot be terminated (the uploader owns it now):
                # free the disk for the next round by hand.
                await asyncio.to_thread(shutil.rmtree, multipart_dir, ignore_errors=True)

            async def tusd() -> None:
                url, elapsed = await asyncio.to_thread(tuspy_upload, tusd_url, "", source)
                stored = tusd_dir / url.rsplit("/", 1)[1]
                assert stored.stat().st_size == SIZE
                seconds["tusd"].append(elapsed)
                seconds["tusd_fsync"].append(elapsed + await asyncio.to_thread(fsync_file, stored))
                stored.unlink()
                stored.with_suffix(".info").unlink()

            async def floor() -> None:
                url, elapsed = await asyncio.to_thread(tuspy_upload, floor_url, "", source)
                chunks = sorted((tmp_path / "floor").glob(url.rsplit("/", 1)[1] + ".*"))
                assert sum(chunk.stat().st_size for chunk in chunks) == SIZE
                seconds["floor"].append(elapsed)
                head = await http.head(url, headers={"Tus-Resumable": "1.0.0"})
                turnaround.append(float(head.headers["floor-turnaround-seconds"]))
                for chunk in chunks:
                    chunk.unlink()

            async def cp() -> None:
                target = tmp_path / "copy.bin"
                started = time.perf_counter()
                await asyncio.to_thread(
                    subprocess.run, ["cp", str(source), str(target)], check=True
                )
                elapsed = time.perf_counter() - started
                assert target.stat().st_size == SIZE
                seconds["cp"].append(elapsed)
                seconds["cp_fsync"].append(elapsed + await asyncio.to_thread(fsync_file, target))
                target.unlink()
                # "Every 8 MiB durable before the next", through the page cache and
                # around it (O_DIRECT, as our folder store writes): the disk's ceiling.
                for key, flags in (("dd_dsync", "dsync"), ("dd_direct", "direct,dsync")):
                    started = time.perf_counter()
                    dd = [
                        "dd",
                        f"if={source}",
                        f"of={target}",
                        f"bs={CHUNK}",
                        f"oflag={flags}",
                        "status=none",
                    ]
                    await asyncio.to_thread(subprocess.run, dd, check=True)
                    seconds[key].append(time.perf_counter() - started)
                    assert target.stat().st_size == SIZE
                    target.unlink()

            sides: list[Callable[[], Awaitable[None]]] = [ours, tusd, floor, cp]
            for round_ in range(ROUNDS):
                order = sides[round_ % len(sides) :] + sides[: round_ % len(sides)]
                for side in order:
                    if side.__name__ in cpu.servers:
                        await cpu.measure(side.__name__, side)
                    else:
                        await side()
    seconds["ceiling"] = [
        disk + client for disk, client in zip(seconds["dd_direct"], turnaround, strict=True)
    ]
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    print_table(medians)
    cpu.print_table()
    for name, values in seconds.items():
        assert len(values) == ROUNDS, name


def print_table(medians: dict[str, float]) -> None:
    rows = [
        ("ours: gateway, folder store", "ours", "every chunk, before its 204"),
        (f"tusd {TUSD_VERSION}, filestore", "tusd", "never (page cache)"),
        ("tusd + one fsync at the end", "tusd_fsync", "at the end only"),
        ("floor: bare durable receiver", "floor", "every chunk, before its 204"),
        ("cp", "cp", "never (page cache)"),
        ("cp + one fsync at the end", "cp_fsync", "at the end only"),
        ("dd bs=8M oflag=dsync", "dd_dsync", "every 8 MiB, through the page cache"),
        ("dd bs=8M oflag=direct,dsync", "dd_direct", "every 8 MiB (the disk's ceiling)"),
        ("ceiling: dd direct + turnaround", "ceiling", "every chunk: no durable server beats it"),
    ]
    print(
        f"\nBENCH tus: {SIZE // MiB} MiB in {CHUNK // MiB} MiB chunks (tuspy), median of {ROUNDS}"
    )
    print(f"  {'side':<32} {'MB/s':>8} {'s':>7}  durable")
    for label, key, durable in rows:
        print(f"  {label:<32} {rate(medians[key]):>8.1f} {medians[key]:>7.2f}  {durable}")
    print(f"  {'ratio ours / tusd':<32} {medians['tusd'] / medians['ours']:>8.2f}")
    print(f"  {'ratio ours / (tusd + fsync)':<32} {medians['tusd_fsync'] / medians['ours']:>8.2f}")
    print(f"  {'ratio floor / tusd':<32} {medians['tusd'] / medians['floor']:>8.2f}")
    print(f"  {'ratio ceiling / tusd':<32} {medians['tusd'] / medians['ceiling']:>8.2f}")
    print(f"  {'ratio ours / floor':<32} {medians['floor'] / medians['ours']:>8.2f}")
    print(f"  {'ratio ours / ceiling':<32} {medians['ceiling'] / medians['ours']:>8.2f}")
    print(f"  {'ratio ours / cp':<32} {medians['cp'] / medians['ours']:>8.2f}")
    print(f"  {'ratio ours / dd direct,dsync':<32} {medians['dd_direct'] / medians['ours']:>8.2f}")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("backend", ["s3"])
async def test_tus_throughput_to_minio(
    upload_stack: StackFactory, backend: str, tmp_path: Path
) -> None:
    stack = await upload_stack.start(backend, with_uploader=False)
    source = random_file(tmp_path / "source.bin", SIZE)
    url, elapsed = await asyncio.to_thread(tuspy_upload, stack.files(), stack.alice.token, source)
    assert await head_offset(stack, stack.alice, url.rsplit("/", 1)[1]) == SIZE
    print(
        f"\nBENCH tus to MinIO (ours only): {SIZE // MiB} MiB in {CHUNK // MiB} MiB chunks, "
        f"{elapsed:.2f} s, {rate(elapsed):.1f} MB/s"
    )
