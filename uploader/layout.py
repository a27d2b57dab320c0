"""Where an upload's bytes live in the object store (mirrors gateway/tus/layout.py).

    uploads/{upload_id}/source                   the assembled file (the multipart's key)
    uploads/{upload_id}/tail-{start:020d}.part   bytes below the part minimum, not the end

Components never import each other, so this file and the gateway's must agree; the
integration tests run both against one store.
"""

from __future__ import annotations

__all__ = ["source_key", "upload_prefix"]


def upload_prefix(upload_id: str) -> str:
    return f"uploads/{upload_id}/"


def source_key(upload_id: str) -> str:
    return f"uploads/{upload_id}/source"
