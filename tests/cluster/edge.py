"""infra/'s nginx edge, rendered for loopback: TLS in front of the cluster's gateways.

The same template the nginx image renders in production (``${VP_*}`` placeholders),
wrapped in a main config that keeps every path in a temp folder.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import string
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "infra" / "nginx" / "videopick.conf.template"
START_TIMEOUT_S = 15.0


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "")
    assert found, "nginx not found: scripts/install-system-deps.sh installs Debian's nginx"
    return found


def self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "edge.crt", folder / "edge.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    key.chmod(0o644)  # nginx workers (nobody) read it; a throw-away key
    return cert, key


def render(folder: Path, gateways: list[str], https_port: int, http_port: int) -> Path:
    """A runnable nginx.conf in ``folder`` around the infra template."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    cert, key = self_signed(folder)
    site = string.Template(TEMPLATE.read_text()).safe_substitute(
        VP_GATEWAY_1=gateways[0],
        VP_GATEWAY_2=gateways[1],
        VP_HTTP_LISTEN=f"127.0.0.1:{http_port}",
        VP_HTTPS_LISTEN=f"127.0.0.1:{https_port}",
        VP_TLS_CERT=str(cert),
        VP_TLS_KEY=str(key),
    )
    (folder / "videopick.conf").write_text(site)
    for temp in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (folder / temp).mkdir(exist_ok=True)
        (folder / temp).chmod(0o777)
    config = folder / "nginx.conf"
    config.write_text(
        f"worker_processes 1;\npid {folder / 'nginx.pid'};\n"
        f"error_log {folder / 'error.log'} warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n  access_log off;\n"
        f"  client_body_temp_path {folder / 'body'};\n  proxy_temp_path {folder / 'proxy'};\n"
        f"  fastcgi_temp_path {folder / 'fastcgi'};\n  uwsgi_temp_path {folder / 'uwsgi'};\n"
        f"  scgi_temp_path {folder / 'scgi'};\n  include {folder / 'videopick.conf'};\n}}\n"
    )
    return config


def check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nginx_binary(), "-t", "-p", str(config.parent), "-c", str(config)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


@dataclass
class Edge:
    url: str
    cert: Path

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def running_edge(folder: Path, gateways: list[str]) -> Iterator[Edge]:
    https_port, http_port = _free_port(), _free_port()
    config = render(folder, gateways, https_port, http_port)
    process = subprocess.Popen(
        [nginx_binary(), "-p", str(folder), "-c", str(config), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert process.poll() is None, (folder / "error.log").read_text()
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", https_port), timeout=0.2),
            ):
                break
            assert time.monotonic() < deadline, "nginx did not listen"
            time.sleep(0.05)
        yield Edge(f"https://127.0.0.1:{https_port}", folder / "edge.crt")
    finally:
        process.terminate()  # the master stops its workers
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
