"""``videopick cluster``: the production shape on one machine, without Docker.

Three nats-server processes clustered with JetStream (``sync_interval: always``,
streams replicated x3), a throw-away PostgreSQL cluster, MinIO, and every component
N-wide (default: two each of gateway, chat, uploader, transcoder and ingest), all on
127.0.0.1. The components run under :class:`common.supervisor.Supervisor`, the same
one ``videopick up`` uses; this module only starts the servers it cannot start.

The fault tests (tests/cluster/) run exactly this code; infra/ describes the same
shape for Docker Compose and Kubernetes.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from common.logs import get_logger
from common.nats_server import free_port, nats_server_binary

log = get_logger(__name__)

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
PORT_ATTEMPTS = 3  # a free port can be taken before the server binds it
CLUSTER_NAME = "videopick"
# Two ingests share one RTMP port (SO_REUSEPORT): the kernel spreads publishers.
DEFAULT_PROCESSES = "gateway=2,chat=2,uploader=2,transcoder=2,ingest=2"
MINIO_USER = "videopick"
MINIO_PASSWORD = "videopick-local-cluster"  # noqa: S105 - a loopback server for one run


class ClusterError(RuntimeError):
    """A server of the local cluster did not come up."""


def _wait(check: str, probe: object, process: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ClusterError(f"{check}: exited with {process.returncode}")
        if callable(probe) and probe():
            return
        time.sleep(0.1)
    raise ClusterError(f"{check}: not ready after {START_TIMEOUT_S} s")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310 - loopback
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- NATS: three nodes, one JetStream cluster --------------------------------------


@dataclass
class NatsNode:
    name: str
    root: Path
    port: int = field(default_factory=free_port)
    cluster_port: int = field(default_factory=free_port)
    monitor_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://127.0.0.1:{self.monitor_port}"

    def write_config(self, routes: list[int]) -> Path:
        store = self.root / "jetstream"
        store.mkdir(parents=True, exist_ok=True)
        config = self.root / "nats.conf"
        route_list = ", ".join(f"nats-route://127.0.0.1:{port}" for port in routes)
        # sync_interval always: an acknowledged write is on disk on a quorum of nodes
        # (Jepsen, NATS 2.12.1: the 2 min default loses acked writes on power loss).
        config.write_text(
            f"server_name: {self.name}\n"
            f"listen: 127.0.0.1:{self.port}\n"
            f"http: 127.0.0.1:{self.monitor_port}\n"
            f'jetstream {{\n  store_dir: "{store}"\n  max_file_store: 8G\n'
            "  sync_interval: always\n}\n"
            f"cluster {{\n  name: {CLUSTER_NAME}\n  listen: 127.0.0.1:{self.cluster_port}\n"
            f"  routes: [{route_list}]\n}}\n"
        )
        return config

    def start(self) -> None:
        log_file = (self.root / "nats.log").open("ab")
        self.process = subprocess.Popen(
            [str(nats_server_binary()), "-c", str(self.root / "nats.conf")],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        log_file.close()

    def wait_ready(self) -> None:
        # /healthz answers 200 once JetStream is up and current with the meta leader.
        _wait(f"nats {self.name}", lambda: _http_ok(f"{self.monitor_url}/healthz"), self.process)

    def kill(self) -> None:
        """SIGKILL (fault tests); ``start`` brings it back with its data."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        _stop(self.process)

    def jsz(self) -> dict[str, object]:
        with urllib.request.urlopen(  # noqa: S310 - loopback
            f"{self.monitor_url}/jsz?streams=true&consumers=true&raft=true", timeout=2.0
        ) as response:
            data: dict[str, object] = json.loads(response.read())
            return data


class NatsCluster:
    def __init__(self, root: Path, size: int = 3) -> None:
        self.nodes = [NatsNode(f"nats-{index}", root / f"nats-{index}") for index in range(size)]

    @property
    def url(self) -> str:
        """All servers, comma-separated: what VIDEOPICK_NATS_URL takes."""
        return ",".join(node.url for node in self.nodes)

    def start(self) -> None:
        routes = [node.cluster_port for node in self.nodes]
        for node in self.nodes:
            node.write_config(routes)
            node.start()
        for node in self.nodes:
            node.wait_ready()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


# --- PostgreSQL: a throw-away cluster from Debian's packages ------------------------


def postgres_bindir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not versions:
        raise ClusterError("PostgreSQL not found: apt-get install -y postgresql")
    return versions[-1].parent


@dataclass
class Postgres:
    """A throw-away cluster: ``initdb`` into ``root``, 127.0.0.1 only, trust auth.

    ``videopick cluster`` runs it as production would (fsync on); the test fixture
    (``tests/fixtures/postgres.py``) turns fsync off: a crash there only means a new
    cluster next run, and CREATE DATABASE and commits get much faster.
    """

    root: Path
    port: int = field(default_factory=free_port)
    bindir: Path = field(default_factory=postgres_bindir)
    fsync: bool = True
    max_connections: int = 300

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/videopick"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def _user(self) -> tuple[int, int] | None:
        # PostgreSQL refuses to run as root: the package's postgres user runs it.
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                entry = pwd.getpwnam(name)
                return entry.pw_uid, entry.pw_gid
        raise ClusterError("running as root and no 'postgres' user to run PostgreSQL as")

    def _run(self, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        user = self._user()
        result = subprocess.run(
            [str(arg) for arg in args],
            cwd=self.root,  # the server user cannot read the caller's cwd
            capture_output=True,
            text=True,
            check=False,
            timeout=START_TIMEOUT_S + 30,
            user=user[0] if user else None,
            group=user[1] if user else None,
            extra_groups=[] if user else None,  # drop root's groups with its uid
        )
        if check and result.returncode != 0:
            raise ClusterError(f"{Path(args[0]).name} failed: {result.stderr.strip()[-2000:]}")
        return result

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        if (user := self._user()) is not None:
            os.chown(self.root, *user)
        # trust: loopback only, one run.
        self._run(
            self.bindir / "initdb", "-D", self.root / "data", "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions",
        )  # fmt: skip

    def start(self) -> None:
        """Start on ``port``; if another process took it meanwhile, on a new free one."""
        for _ in range(PORT_ATTEMPTS):
            # -k: the unix socket goes in our folder, not /var/run/postgresql.
            options = (
                f"-h 127.0.0.1 -p {self.port} -k {self.root} "
                f"-c max_connections={self.max_connections} -c log_min_messages=warning"
            )
            if not self.fsync:
                options = f"-F {options}"
            result = self._run(
                self.bindir / "pg_ctl", "start", "-D", self.root / "data", "-l", self.log,
                "-w", "-t", str(int(START_TIMEOUT_S)), "-s", "-o", options, check=False,
            )  # fmt: skip
            if result.returncode == 0:
                return
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            if not re.search(r"could not bind|Address already in use", log):
                break  # not a port race: another port will not help
            self.port = free_port()
        raise ClusterError(
            f"pg_ctl start failed ({result.returncode}): {result.stderr.strip()}\n"
            f"--- {self.log} ---\n{log[-4000:]}"
        )

    def create_database(self) -> None:
        self._run(
            self.bindir / "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U",
            "postgres", "videopick",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        pidfile = self.root / "data" / "postmaster.pid"
        if not pidfile.exists():
            return
        result = self._run(
            self.bindir / "pg_ctl", "stop", "-D", self.root / "data", "-m", mode, "-w", "-s",
            check=False,
        )  # fmt: skip
        if result.returncode != 0 and pidfile.exists():
            # The postmaster we started (its pid is line 1 of its own pid file).
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)


# --- MinIO --------------------------------------------------------------------------


def minio_binary() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    for candidate in (cache / "videopick" / "bin" / "minio", shutil.which("minio")):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise ClusterError("MinIO not found: run `bash scripts/install-minio.sh`")


@dataclass
class Minio:
    root: Path
    binary: Path
    port: int = field(default_factory=free_port)
    console_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "MINIO_ROOT_USER": MINIO_USER,
            "MINIO_ROOT_PASSWORD": MINIO_PASSWORD,
            "MINIO_UPDATE": "off",
        }
        log_file = (self.root / "minio.log").open("ab")
        self.process = subprocess.Popen(
            [
                str(self.binary), "server", str(self.root / "data"),
                "--address", self.endpoint,
                "--console-address", f"127.0.0.1:{self.console_port}", "--quiet",
            ],
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        log_file.close()
        _wait(
            "minio",
            lambda: _http_ok(f"http://{self.endpoint}/minio/health/ready"),
            self.process,
        )

    def stop(self) -> None:
        _stop(self.process)


# --- the whole shape ----------------------------------------------------------------


class LocalCluster:
    """The servers of the production shape, and the environment its components need."""

    def __init__(
        self,
        root: Path,
        *,
        processes: str = DEFAULT_PROCESSES,
        http_port: int | None = None,
        minio: Path | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.processes = processes
        self.http_port = http_port or free_port()
        self.rtmp_port = free_port()
        self.nats = NatsCluster(root / "nats")
        self.postgres = Postgres(root / "pg")
        self.minio = Minio(root / "minio", minio or minio_binary())
        self.extra_env = extra_env or {}

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # PostgreSQL runs as its own user when we are root: it must reach root/pg.
        self.root.chmod(0o755)
        try:
            self.nats.start()
            self.postgres.init()
            self.postgres.start()
            self.postgres.create_database()
            self.minio.start()
        except BaseException:
            self.stop()
            raise
        log.info("cluster servers ready", nats=self.nats.url, postgres=self.postgres.port)

    def stop(self) -> None:
        self.minio.stop()
        self.postgres.stop("immediate")
        self.nats.stop()

    def gateway_urls(self) -> list[str]:
        count = _count(self.processes, "gateway")
        return [f"http://127.0.0.1:{self.http_port + index}" for index in range(count)]

    def env(self) -> dict[str, str]:
        """``VIDEOPICK_*`` for the supervisor and every component it starts."""
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith("VIDEOPICK_")},
            "VIDEOPICK_DATA_DIR": str(self.root / "data"),
            "VIDEOPICK_NATS_URL": self.nats.url,
            "VIDEOPICK_NATS_REPLICAS": "3",
            "VIDEOPICK_DATABASE_URL": self.postgres.url,
            "VIDEOPICK_STORE_BACKEND": "s3",
            "VIDEOPICK_S3_ENDPOINT": self.minio.endpoint,
            "VIDEOPICK_S3_ACCESS_KEY": MINIO_USER,
            "VIDEOPICK_S3_SECRET_KEY": MINIO_PASSWORD,
            "VIDEOPICK_S3_BUCKET": "videopick",
            "VIDEOPICK_HTTP_PORT": str(self.http_port),
            "VIDEOPICK_PUBLIC_URL": f"http://127.0.0.1:{self.http_port}",
            "VIDEOPICK_RTMP_PORT": str(self.rtmp_port),
            "VIDEOPICK_RTMP_REUSE_PORT": "true",
            "VIDEOPICK_RTMP_PUBLIC_URL": f"rtmp://127.0.0.1:{self.rtmp_port}/live",
            "VIDEOPICK_PROCESSES": self.processes,
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }


def _count(spec: str, component: str) -> int:
    from common.supervisor import parse_process_counts

    return parse_process_counts(spec).get(component, 1)


def kill(pid: int) -> None:
    """kill -9 one process we started."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def run_cluster(root: Path, *, processes: str = DEFAULT_PROCESSES, http_port: int = 8080) -> int:
    """``videopick cluster``: start the servers, supervise the components, stop it all."""
    import asyncio

    from common.settings import load_settings
    from common.supervisor import Supervisor

    cluster = LocalCluster(root.resolve(), processes=processes, http_port=http_port)
    try:
        cluster.start()
        env = cluster.env()
        settings = load_settings(env)
        return asyncio.run(Supervisor(settings, env=env).run())
    finally:
        cluster.stop()
