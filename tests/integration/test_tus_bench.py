"""Upload throughput: 200 MiB in 8 MiB chunks with tuspy, to the folder store and MinIO.

Run with ``make bench`` or ``pytest -m bench tests/integration/test_tus_bench.py -s``.
Every chunk is durable (fsynced part or S3 part) before its 204, and its
``chunk.uploaded`` is published before the answer, as in production. The uploader is
not running, so the figure is the gateway's ingest alone. For reference, NOTES.md
measured @tus/server with a file store at 289-319 MB/s on this kind of machine.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_tus_fixtures import (
    MiB,
    StackFactory,
    head_offset,
    store_choices_fixture,  # noqa: F401 - fixture
    upload_stack_fixture,  # noqa: F401 - fixture
)

pytestmark = [pytest.mark.integration, pytest.mark.bench]

CLIENT = """
import sys, time
from tusclient import client
files, token, path, chunk = sys.argv[1:]
tus = client.TusClient(files, headers={"Authorization": f"Bearer {token}"})
uploader = tus.uploader(file_path=path, chunk_size=int(chunk), metadata={})
started = time.perf_counter()
uploader.upload()
print(uploader.url, time.perf_counter() - started)
"""
SIZE = int(os.environ.get("VIDEOPICK_TEST_BENCH_MIB", "200")) * MiB
CHUNK = 8 * MiB


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("backend", ["local", "s3"])
async def test_tuspy_throughput(upload_stack: StackFactory, backend: str, tmp_path: Path) -> None:
    stack = await upload_stack.start(backend, with_uploader=False)
    path = tmp_path / "bench.bin"
    block = os.urandom(MiB)
    with path.open("wb") as file:
        for _ in range(SIZE // MiB):
            file.write(block)
    # The client in its own process, as in real life: a thread of this one would share
    # the GIL with the server it measures.
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", CLIENT, stack.files(), stack.alice.token, str(path), str(CHUNK)],
        capture_output=True,
        text=True,
        check=True,
    )
    url, seconds = result.stdout.split()
    elapsed = float(seconds)
    assert await head_offset(stack, stack.alice, url.rsplit("/", 1)[1]) == SIZE
    rate = SIZE / elapsed / 1e6
    print(
        f"\nBENCH tus {backend}: {SIZE // MiB} MiB in {CHUNK // MiB} MiB chunks, "
        f"{elapsed:.2f} s, {rate:.1f} MB/s ({SIZE / elapsed / MiB:.1f} MiB/s)"
    )
