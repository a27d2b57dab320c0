#!/usr/bin/env bash
# Build a third-party Go server used by the tests or benchmarks (MinIO, Centrifugo,
# tusd, nats-server clusters...) into the cache, once per pinned version.
#
# Usage: scripts/install-go-tool.sh NAME MODULE/PATH@VERSION
#   prints the binary's path last; does nothing when that version is already built.
set -euo pipefail

if [[ $# -ne 2 || "$2" != *@* ]]; then
    echo "usage: $0 NAME MODULE/PATH@VERSION" >&2
    exit 2
fi
name="$1"
target="$2"
version="${target##*@}"

bin_dir="${XDG_CACHE_HOME:-$HOME/.cache}/videopick/bin"
binary="$bin_dir/$name"
stamp="$bin_dir/$name.version"

if [[ -x "$binary" && -f "$stamp" && "$(cat "$stamp")" == "$version" ]]; then
    echo "install-go-tool: $name $version already at $binary" >&2
    echo "$binary"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    echo "install-go-tool: 'go' is not on PATH; install Go >= 1.24 to build $name" >&2
    exit 1
fi

mkdir -p "$bin_dir"
build_dir="$(mktemp -d "$bin_dir/.build.XXXXXX")"
trap 'rm -rf "$build_dir"' EXIT

echo "install-go-tool: building $target with $(go version) (minutes the first time)" >&2
start=$SECONDS
# CGO_ENABLED=0: static binaries, no C compiler needed. GOBIN to a scratch folder, then
# a rename: a cut-short build never leaves a half-written binary where tests look.
GOBIN="$build_dir" CGO_ENABLED=0 go install "$target"
built="$(find "$build_dir" -maxdepth 1 -type f -perm -u+x | head -n 1)"
if [[ -z "$built" ]]; then
    echo "install-go-tool: go install produced no binary for $target" >&2
    exit 1
fi
mv -f "$built" "$binary"
echo "$version" > "$stamp"
echo "install-go-tool: built $binary in $((SECONDS - start)) s" >&2
echo "$binary"
