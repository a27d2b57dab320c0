"""The latency peer: nginx with Debian's libnginx-mod-rtmp, HLS with 1 s fragments.

Everything lives in a temporary prefix (config, error log, pid, HLS folder, temp
paths); it listens on loopback only and is stopped by its own pid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from common.nats_server import free_port
from tests.integration.live_stack import stop_process, wait_for_port

MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")

CONFIG = """\
load_module {module};
worker_processes 1;
{user}
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 256; }}
rtmp {{
    server {{
        listen 127.0.0.1:{rtmp_port};
        chunk_size 4096;
        application live {{
            live on;
            record off;
            hls on;
            hls_path {prefix}/hls;
            hls_fragment 1s;
            hls_playlist_length 10s;
        }}
    }}
}}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    server {{
        listen 127.0.0.1:{http_port};
        location /hls/ {{
            root {prefix};
            types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}
            add_header Cache-Control no-cache;
            add_header Access-Control-Allow-Origin *;
        }}
    }}
}}
"""


@dataclass(frozen=True)
class NginxRtmp:
    rtmp_port: int
    http_url: str
    pid: int  # the master; its worker does the work

    def playlist_url(self, key: str) -> str:
        return f"{self.http_url}/hls/{key}.m3u8"

    def pids(self) -> list[int]:
        """The master and its workers."""
        found = [self.pid]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == self.pid:
                    found.append(int(entry.name))
        return found


@contextlib.contextmanager
def nginx_rtmp(prefix: Path) -> Iterator[NginxRtmp]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not MODULE.exists() or not Path(nginx).exists():
        raise RuntimeError("nginx + libnginx-mod-rtmp missing: run scripts/install-system-deps.sh")
    (prefix / "hls").mkdir(parents=True)
    (prefix / "tmp").mkdir()
    rtmp_port, http_port = free_port(), free_port()
    # As root, nginx's workers would drop to "nobody" and could not write our temp dir.
    user = "user root;" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(
        CONFIG.format(
            module=MODULE, user=user, prefix=prefix, rtmp_port=rtmp_port, http_port=http_port
        )
    )
    log_path = prefix / "error.log"
    process = subprocess.Popen(
        [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(log_path), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(rtmp_port, process, log_path)
        wait_for_port(http_port, process, log_path)
        yield NginxRtmp(rtmp_port, f"http://127.0.0.1:{http_port}", process.pid)
    finally:
        stop_process(process)
