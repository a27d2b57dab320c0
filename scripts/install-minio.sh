#!/usr/bin/env bash
# Build the MinIO server that the S3 integration tests start (tests/fixtures/minio.py).
#
# MinIO's release tags (RELEASE.2026-...) are not semver, so Go can only address a
# commit by its pseudo-version; the Go module proxy serves that source. A build takes ~4 minutes on 2 cores, so the
# binary is cached and this script does nothing when the pinned version is there.
#
# Usage: scripts/install-minio.sh        (idempotent; prints the binary's path last)
set -euo pipefail

MINIO_MODULE="github.com/minio/minio"
MINIO_VERSION="v0.0.0-20260212201848-7aac2a2c5b7c"

bin_dir="${XDG_CACHE_HOME:-$HOME/.cache}/videopick/bin"
binary="$bin_dir/minio"
stamp="$bin_dir/minio.version"

if [[ -x "$binary" && -f "$stamp" && "$(cat "$stamp")" == "$MINIO_VERSION" ]]; then
    echo "install-minio: $MINIO_VERSION already at $binary" >&2
    echo "$binary"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    echo "install-minio: 'go' is not on PATH; install Go >= 1.24 to build MinIO" >&2
    exit 1
fi

mkdir -p "$bin_dir"
build_dir="$(mktemp -d "$bin_dir/.build.XXXXXX")"
trap 'rm -rf "$build_dir"' EXIT

echo "install-minio: building $MINIO_MODULE@$MINIO_VERSION with $(go version)" >&2
echo "install-minio: this takes a few minutes the first time" >&2
start=$SECONDS
# CGO_ENABLED=0 as MinIO's own release builds: a static binary, no C compiler needed.
# GOBIN to a scratch folder, then a rename: a cut-short build never leaves a
# half-written binary where the tests look for one.
GOBIN="$build_dir" CGO_ENABLED=0 \
    go install "$MINIO_MODULE@$MINIO_VERSION"
mv -f "$build_dir/minio" "$binary"
echo "$MINIO_VERSION" > "$stamp"
echo "install-minio: built $binary in $((SECONDS - start)) s" >&2
echo "$binary"
