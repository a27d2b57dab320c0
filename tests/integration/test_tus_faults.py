"""Faults around the upload path: the S3 endpoint going away mid-upload.

A private MinIO (not the session's shared one) is stopped between two PATCHes and
started again on the same port and data: the gateway answers 503 quickly while it is
gone, loses none of the parts it had acknowledged, and the upload resumes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from events.catalog import UploadCompleted
from tests.fixtures.minio import (
    ACCESS_KEY,
    SECRET_KEY,
    _find_binary,
    _free_port,
    _stop,
    _wait_healthy,
)
from tests.integration.test_tus_fixtures import (
    MiB,
    StackFactory,
    auth,
    create,
    head_offset,
    padded_mp4,
    patch,
    sha256,
    store_choices_fixture,  # noqa: F401 - fixture
    upload_stack_fixture,  # noqa: F401 - fixture
)

pytestmark = pytest.mark.integration


@dataclass
class PrivateMinio:
    binary: Path
    root: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {
            **os.environ,
            "MINIO_ROOT_USER": ACCESS_KEY,
            "MINIO_ROOT_PASSWORD": SECRET_KEY,
            "MINIO_UPDATE": "off",
        }
        self.process = subprocess.Popen(
            [
                str(self.binary), "server", str(self.root / "data"),
                "--address", self.endpoint,
                "--console-address", f"127.0.0.1:{_free_port()}",
                "--quiet",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            env=env,
        )  # fmt: skip
        problem = _wait_healthy(self.process, self.port)
        assert problem is None, problem

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
            self.process = None


@pytest.fixture
def private_minio() -> Iterator[PrivateMinio]:
    server = PrivateMinio(_find_binary(), Path(tempfile.mkdtemp(prefix="vp-minio-")), _free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_s3_down_mid_upload_loses_nothing_acknowledged(
    upload_stack: StackFactory, private_minio: PrivateMinio
) -> None:
    stack = await upload_stack.start(
        "local",
        store_backend="s3",
        s3_endpoint=private_minio.endpoint,
        s3_access_key=ACCESS_KEY,
        s3_secret_key=SECRET_KEY,
        s3_bucket="faults",
    )
    data = padded_mp4(14 * MiB)
    upload_id = await create(stack, stack.alice, len(data))
    assert (await patch(stack, stack.alice, upload_id, 0, data[: 6 * MiB])).status_code == 204

    private_minio.stop()
    response = await patch(stack, stack.alice, upload_id, 6 * MiB, data[6 * MiB : 12 * MiB])
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    head = await stack.client.head(f"/files/{upload_id}", headers=auth(stack.alice))
    assert head.status_code == 503

    private_minio.start()
    offset = await head_offset(stack, stack.alice, upload_id)
    assert offset == 6 * MiB  # what was acknowledged, nothing of the failed PATCH
    assert (await patch(stack, stack.alice, upload_id, offset, data[offset:])).status_code == 204
    completed = await stack.events.wait_for(UploadCompleted, upload_id=upload_id)
    assert completed.sha256 == sha256(data)
