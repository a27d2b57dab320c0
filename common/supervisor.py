"""``videopick up``: the whole platform on one machine, one process per component.

Order: NATS (unless ``VIDEOPICK_NATS_URL`` names one) → streams → database migrations
→ components. Children run in their own sessions so a Ctrl-C reaches the supervisor
alone, which then stops them in reverse order (components, then NATS) and waits: no
process is left behind. A component that dies is restarted with a growing delay.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nats
from rich.console import Console
from rich.table import Table

from common.components import available_components, default_process_counts
from common.db import migrate
from common.logs import get_logger
from common.nats_server import NatsServerProcess
from common.settings import Settings, split_nats_url
from events.streams import init_streams

log = get_logger(__name__)
console = Console(stderr=True)

STOP_GRACE_S = 10.0
RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
# A child that lived this long is healthy again: its next crash restarts quickly.
HEALTHY_AFTER_S = 60.0


@dataclass
class Child:
    component: str
    index: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    next_start: float = 0.0
    exit_codes: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.component}-{self.index}"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        output = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.component],
            env=self.env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        output.close()
        self.started_at = time.monotonic()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)


def parse_process_counts(spec: str) -> dict[str, int]:
    """``gateway=2,transcoder=2`` → {"gateway": 2, "transcoder": 2} over the defaults
    (:func:`~common.components.default_process_counts`)."""
    counts = default_process_counts()
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, number = item.partition("=")
        if not number.isdigit() or int(number) < 0:
            raise ValueError(f"bad process count {item!r}: expected NAME=N")
        counts[name.strip()] = int(number)
    return counts


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        *,
        only: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.only = only
        # The children's environment (``videopick cluster`` passes its own).
        self.env = dict(os.environ) if env is None else env
        self.nats: NatsServerProcess | None = None
        self.children: list[Child] = []
        self._stopping = asyncio.Event()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._stopping.set)
        try:
            await self._prepare()
            self._spawn_children()
            self._print_summary()
            await self._watch()
        finally:
            await asyncio.to_thread(self._shutdown)
        return 0

    async def _prepare(self) -> None:
        settings = self.settings
        data_dir = settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        nats_url = settings.nats_url
        if not nats_url:
            self.nats = NatsServerProcess(
                data_dir / "nats",
                port=settings.nats_port,
                log_file=data_dir / "logs" / "nats.log",
            )
            await asyncio.to_thread(self.nats.start)
            nats_url = self.nats.url
        client = await nats.connect(split_nats_url(nats_url), connect_timeout=5)
        try:
            results = await init_streams(client.jetstream(), settings)
        finally:
            await client.close()
        log.info("streams ready", streams=",".join(name for name, _ in results))
        await migrate(settings.resolved_database_url)
        log.info("database migrated")
        self._nats_url = nats_url

    def _spawn_children(self) -> None:
        counts = parse_process_counts(self.env.get("VIDEOPICK_PROCESSES", ""))
        components = self.only or available_components()
        env = dict(self.env)
        env["VIDEOPICK_NATS_URL"] = self._nats_url
        env.setdefault("PYTHONUNBUFFERED", "1")
        logs = self.settings.data_dir / "logs"
        for component in components:
            for index in range(counts.get(component, 1)):
                child_env = dict(env, VIDEOPICK_INSTANCE=f"{component}-{index}")
                if component == "ingest" and counts.get(component, 1) > 1:
                    # The kernel spreads publishers over the processes on one port.
                    child_env.setdefault("VIDEOPICK_RTMP_REUSE_PORT", "true")
                if component == "gateway" and index > 0:
                    # Extra gateways listen on the next ports; a proxy spreads the load.
                    child_env["VIDEOPICK_HTTP_PORT"] = str(self.settings.http_port + index)
                child = Child(component, index, child_env, logs / f"{component}-{index}.log")
                child.start()
                self.children.append(child)

    def _print_summary(self) -> None:
        table = Table(title="VideoPick is running", title_justify="left")
        table.add_column("what")
        table.add_column("pid", justify="right")
        table.add_column("where")
        if self.nats:
            table.add_row("nats-server (JetStream)", str(self.nats.pid), self._nats_url)
        else:
            table.add_row("NATS (external)", "-", self._nats_url)
        table.add_row("database", "-", _display_url(self.settings.resolved_database_url))
        store = (
            str(self.settings.resolved_store_path)
            if self.settings.store_backend == "local"
            else f"s3://{self.settings.s3_endpoint}/{self.settings.s3_bucket}"
        )
        table.add_row("object store", "-", store)
        for child in self.children:
            pid = str(child.process.pid) if child.process else "-"
            table.add_row(child.name, pid, _where(child, self.settings))
        console.print(table)
        console.print(f"logs: {self.settings.data_dir / 'logs'}    stop: Ctrl-C")

    async def _watch(self) -> None:
        while not self._stopping.is_set():
            now = time.monotonic()
            for child in self.children:
                process = child.process
                if process is not None and process.poll() is not None:
                    child.exit_codes.append(process.returncode)
                    lived = now - child.started_at
                    if lived > HEALTHY_AFTER_S:
                        child.restarts = 0
                    delay = RESTART_BACKOFF_S[min(child.restarts, len(RESTART_BACKOFF_S) - 1)]
                    child.restarts += 1
                    child.process = None
                    child.next_start = now + delay
                    log.error(
                        "component exited, restarting",
                        component=child.name,
                        code=process.returncode,
                        restart_in_s=delay,
                        log=str(child.log_path),
                    )
                elif process is None and now >= child.next_start:
                    child.start()
                    log.info("component restarted", component=child.name)
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=0.5)
            except TimeoutError:
                continue

    def _shutdown(self) -> None:
        console.print("stopping…")
        for child in reversed(self.children):
            child.stop()
        deadline = time.monotonic() + STOP_GRACE_S
        for child in self.children:
            process = child.process
            if process is None:
                continue
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("component did not stop in time, killing", component=child.name)
                process.kill()
                process.wait()
        if self.nats:
            self.nats.stop()
        console.print("stopped")


def _display_url(url: str) -> str:
    """The URL without its password."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        credentials, _, host = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        return f"{scheme}{sep}{user}:***@{host}"
    return url


def _where(child: Child, settings: Settings) -> str:
    if child.component == "gateway":
        port = child.env.get("VIDEOPICK_HTTP_PORT", str(settings.http_port))
        return f"http://{settings.http_host}:{port}"
    if child.component == "ingest":
        return f"rtmp://{settings.rtmp_host}:{settings.rtmp_port}/live"
    return f"log: {child.log_path}"
