#!/usr/bin/env bash
# Debian packages the test suite needs: PostgreSQL's server binaries (the tests start a
# throw-away cluster with initdb/pg_ctl), the ffmpeg CLI (a real RTMP publisher and the
# transcoding peer in benchmarks), Chromium (the browser tests drive it with Playwright
# through executable_path) and nginx with its RTMP module (the live-latency peer in
# `make bench`). Installs only what is missing, and only as root; otherwise it says
# what to install.
set -euo pipefail

missing=()
have_initdb() {
    command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}
have_initdb || missing+=(postgresql)
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v chromium >/dev/null 2>&1 || missing+=(chromium fonts-dejavu-core)
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
compgen -G "/usr/lib/nginx/modules/ngx_rtmp_module.so" >/dev/null || missing+=(libnginx-mod-rtmp)
# The stream module: infra/'s edge proxies RTMP (tests/cluster checks its config).
compgen -G "/usr/lib/nginx/modules/ngx_stream_module.so" >/dev/null || missing+=(libnginx-mod-stream)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)  # the edge's test certificate

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "system-deps: all present" >&2
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
    echo "system-deps: missing ${missing[*]}; run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi

echo "system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts packaged services on install; the tests and benchmarks run their own
# nginx (on loopback, their own config), so leave the packaged one off.
if command -v nginx >/dev/null 2>&1 && [[ -f /run/nginx.pid ]]; then
    kill "$(cat /run/nginx.pid)" 2>/dev/null || true
fi
# Debian starts a cluster on install; the tests run their own, so leave the packaged one off.
if command -v pg_ctlcluster >/dev/null 2>&1; then
    pg_lsclusters --no-header 2>/dev/null | while read -r version name _; do
        pg_ctlcluster "$version" "$name" stop 2>/dev/null || true
    done
fi
