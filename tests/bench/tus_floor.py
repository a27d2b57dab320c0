"""A bare durable tus receiver: the floor under our gateway in ``bench_tus.py``.

    python -m tests.bench.tus_floor PORT FOLDER

A thread per connection, the request head parsed by hand, and each PATCH body read
from the socket by that thread straight into the folder store's own writer
(``write_blocking`` with a ``DirectAppender``: O_DIRECT, one write at a time), then
fsynced, renamed and the folder fsynced before the 204, one file per chunk: exactly
the durability of our gateway's 204, without the framework, the auth, the database,
the lock or the events. What it reaches against tusd is what any durable server can
reach on this machine and this client; the gap between it and ours is our own.

It also times the client: from each answer to an upload's request until the next
request's first byte (tuspy reads the next chunk and opens a new connection for each
PATCH). No server can answer sooner than its disk plus that turnaround, which HEAD
reports (``Floor-Turnaround-Seconds``, the sum over the upload) so that the benchmark
can print the ceiling for any durable server.

Only what tuspy sends is understood (creation, PATCH, HEAD); anything else is a 400.
Not a server to use: no auth, no limits, uploads in memory.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common.store import _localfs as fs
from common.store._appender import open_appender
from common.store._blocking_stream import write_blocking
from common.store.local import STREAM_BUFFER

HEAD_END = b"\r\n\r\n"


@dataclass
class Upload:
    length: int
    offset: int = 0
    chunks: int = 0
    answered_at: float = 0.0
    turnaround_s: float = 0.0


class SocketBody:
    """A BlockingBody: ``pending`` bytes already read, then ``length`` in all from the
    socket (blocking)."""

    def __init__(self, conn: socket.socket, pending: bytes, length: int) -> None:
        self._conn = conn
        self._pending = memoryview(pending)
        self.left = length

    def readinto(self, view: memoryview) -> int:
        view = view[: self.left]
        if not view:
            return 0
        if self._pending:
            count = min(len(view), len(self._pending))
            view[:count] = self._pending[:count]
            self._pending = self._pending[count:]
        else:
            count = self._conn.recv_into(view)
            if not count:
                raise EOFError("the client left mid-body")
        self.left -= count
        return count

    def ended(self, read_back: Callable[[], bytes]) -> None:
        return None


class FloorServer:
    def __init__(self, port: int, folder: Path) -> None:
        self.port = port
        self.folder = folder
        self.uploads: dict[str, Upload] = {}
        self._lock = threading.Lock()

    def serve_forever(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        pending = b""
        with conn:
            while True:
                arrived = time.perf_counter()
                while HEAD_END not in pending:
                    data = conn.recv(65536)
                    if not data:
                        return
                    if not pending:
                        arrived = time.perf_counter()
                    pending += data
                head, pending = pending.split(HEAD_END, 1)
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {
                    name.strip().lower(): value.strip()
                    for name, value in (line.split(":", 1) for line in lines[1:])
                }
                length = int(headers.get("content-length", "0"))
                upload = self._timed(method, path, arrived)
                status, extra = self._answer(conn, method, path, headers, pending[:length])
                pending = pending[length:]
                conn.sendall(
                    f"HTTP/1.1 {status}\r\nTus-Resumable: 1.0.0\r\nContent-Length: 0\r\n"
                    f"{extra}\r\n".encode()
                )
                if upload is not None:
                    upload.answered_at = time.perf_counter()

    def _timed(self, method: str, path: str, arrived: float) -> Upload | None:
        """The upload a PATCH is for, its client turnaround counted; ``None`` else."""
        if method != "PATCH":
            return None
        upload = self.uploads.get(path.rsplit("/", 1)[1])
        if upload is not None and upload.answered_at:
            upload.turnaround_s += arrived - upload.answered_at
        return upload

    def _answer(
        self, conn: socket.socket, method: str, path: str, headers: dict[str, str], pending: bytes
    ) -> tuple[str, str]:
        upload_id = path.rsplit("/", 1)[1]
        if method == "POST":
            upload_id = uuid.uuid4().hex
            with self._lock:
                self.uploads[upload_id] = Upload(
                    int(headers["upload-length"]), answered_at=time.perf_counter()
                )
            return "201 Created", f"Location: http://127.0.0.1:{self.port}/files/{upload_id}\r\n"
        upload = self.uploads.get(upload_id)
        if upload is None:
            return "404 Not Found", ""
        if method == "HEAD":
            return "200 OK", (
                f"Upload-Offset: {upload.offset}\r\nUpload-Length: {upload.length}\r\n"
                f"Floor-Turnaround-Seconds: {upload.turnaround_s:.6f}\r\n"
            )
        if method == "PATCH" and int(headers["upload-offset"]) == upload.offset:
            length = int(headers["content-length"])
            self._append(upload_id, upload, SocketBody(conn, pending, length), length)
            return "204 No Content", f"Upload-Offset: {upload.offset}\r\n"
        return "400 Bad Request", "Connection: close\r\n"

    def _append(self, upload_id: str, upload: Upload, body: SocketBody, length: int) -> None:
        final = self.folder / f"{upload_id}.{upload.chunks:05d}"
        handle, tmp = fs.open_temp(self.folder, final, final.name, make_parents=False)
        appender = open_appender(handle, tmp, STREAM_BUFFER)
        try:
            write_blocking(appender, body, final.name, length, tmp.read_bytes)
        finally:
            appender.close()
        fs.finish_temp(handle)
        tmp.replace(final)
        fs.fsync_dir(self.folder)
        upload.offset += length
        upload.chunks += 1


if __name__ == "__main__":
    FloorServer(int(sys.argv[1]), Path(sys.argv[2])).serve_forever()
