#!/usr/bin/env bash
# Build the MinIO server that the S3 integration tests start (tests/fixtures/minio.py).
#
# MinIO's release tags (RELEASE.2026-...) are not semver, so Go can only address a
# commit by its pseudo-version; the Go module proxy serves that source. A build takes
# ~4 minutes on 2 cores, so the binary is cached (scripts/install-go-tool.sh).
set -euo pipefail
exec "$(dirname "$0")/install-go-tool.sh" minio \
    "github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c"
