"""The official JS tus client (npm ``tus-js-client``, pinned in tests/js) under Node.

Each upload is cut mid-PATCH by a TCP proxy (tests/fixtures/cut_proxy.py) at a random
point of its body, the client's attempt fails, and a new ``tus.Upload`` finds the URL
it stored under the file's fingerprint and resumes it (tests/js/tus_cut_resume.mjs).
Then the upload is assembled as the uploader does it and the stored object must hash
to the source file: 100 uploads of random sizes and content on the folder store, 10
on MinIO. ``VIDEOPICK_TEST_SEED`` replays a run (the seed is printed on failure).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.cut_proxy import CutProxy, cut_proxy
from tests.integration.test_tus_fixtures import (
    StackFactory,
    UploadStack,
    store_choices_fixture,  # noqa: F401 - fixture
    upload_stack_fixture,  # noqa: F401 - fixture
)
from uploader.assembly import assemble, sha256_of

pytestmark = pytest.mark.integration

JS_DIR = Path(__file__).resolve().parents[1] / "js"
NODE_DEADLINE_S = 100.0
CONCURRENCY = 4
SMALLEST_LOG2, LARGEST_LOG2 = 12, 22  # 4 KiB .. 4 MiB, spread evenly on a log scale


@pytest.fixture(scope="module")
def node_tus() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("Node.js and npm are needed for tus-js-client (apt-get install nodejs npm)")
    if not (JS_DIR / "node_modules" / "tus-js-client").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True)
    return node


async def run_tus_js(
    node: str, endpoint: str, token: str, files: list[Path], workdir: Path
) -> list[dict[str, Any]]:
    """tests/js/tus_cut_resume.mjs over ``files``; one record per file, in order."""
    plan = workdir / "plan.json"
    plan.write_text(json.dumps([str(path) for path in files]))
    storage = workdir / "url-storage"
    storage.mkdir()
    env = dict(
        os.environ,
        ENDPOINT=endpoint,
        TOKEN=token,
        PLAN=str(plan),
        STORAGE_DIR=str(storage),
        CONCURRENCY=str(CONCURRENCY),
    )
    process = await asyncio.create_subprocess_exec(
        node,
        str(JS_DIR / "tus_cut_resume.mjs"),
        cwd=JS_DIR,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(NODE_DEADLINE_S):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    records: list[dict[str, Any]] = json.loads(out)
    return records


def random_files(rng: random.Random, count: int, folder: Path) -> dict[Path, bytes]:
    files = {}
    for index in range(count):
        size = int(2 ** rng.uniform(SMALLEST_LOG2, LARGEST_LOG2))
        path = folder / f"upload-{index:03d}.bin"
        data = rng.randbytes(size)
        path.write_bytes(data)
        files[path] = data
    return files


async def check_upload(
    stack: UploadStack, proxy: CutProxy, record: dict[str, Any], data: bytes
) -> bool:
    """Cut once, resumed from its stored URL at a durable offset, stored intact.

    Returns whether the client resumed exactly where the cut left off.
    """
    assert record["firstOk"] is False, f"not cut: {record}"
    assert record["previousUrls"] == [record["firstUrl"]], record
    assert record["resumedOk"], record["resumedError"]
    assert record["url"] == record["firstUrl"], "resumed a different upload"
    upload_id = record["url"].rsplit("/", 1)[1]
    cut = proxy.cuts[upload_id]
    assert (cut.upload_offset, cut.content_length) == (0, len(data))
    last = proxy.patches[upload_id][-1]
    # Where the gateway said it stood: never beyond what it was sent.
    assert 0 <= last.upload_offset <= cut.forwarded
    assert last.upload_offset + last.content_length == len(data)
    key = await assemble(stack.store, upload_id, len(data))
    assert await sha256_of(stack.store, key) == hashlib.sha256(data).hexdigest(), record
    return bool(last.upload_offset == cut.forwarded)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("backend", "count"), [("local", 100), ("s3", 10)])
async def test_tus_js_client_resumes_cut_uploads_intact(
    upload_stack: StackFactory, backend: str, count: int, node_tus: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("VIDEOPICK_TEST_SEED") or random.randrange(2**32))
    print(f"VIDEOPICK_TEST_SEED={seed}")  # shown with a failure, to replay it
    rng = random.Random(seed)
    folder = tmp_path / "files"
    folder.mkdir()
    files = random_files(rng, count, folder)
    async with cut_proxy(seed) as proxy:
        # Location headers must point at the proxy, so it is the gateway's public URL.
        stack = await upload_stack.start(backend, with_uploader=False, public_url=proxy.url)
        proxy.upstream_port = stack.settings.http_port
        records = await run_tus_js(
            node_tus, stack.files(), stack.alice.token, list(files), tmp_path
        )
        assert [Path(record["file"]) for record in records] == list(files), f"seed={seed}"
        exact = 0
        for record in records:
            exact += await check_upload(stack, proxy, record, files[Path(record["file"])])
    assert len(proxy.cuts) == count, f"seed={seed}"
    print(f"\n{count} cut uploads resumed intact ({exact} exactly at the cut), seed={seed}")
