"""Deterministic ids derived from the upload id: what makes finalizing idempotent.

Finalizing an upload twice (a redelivered completion, two replicas racing, a crash
between publishing and recording it) must produce the same video, not a second one.
So the video id and the ids of the events it publishes are functions of the upload
id: a repeated publish is dropped by JetStream's duplicate window (same
``Nats-Msg-Id``), and after that by every consumer's processed-event record (same
``event_id``) — the transcoder sees one ``transcode.requested`` per upload.
"""

from __future__ import annotations

import uuid
from typing import Final

__all__ = ["event_id", "video_id"]

_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "videopick:uploader")


def video_id(upload_id: str) -> str:
    return uuid.uuid5(_NAMESPACE, f"video:{upload_id}").hex


def event_id(upload_id: str, event_type: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{event_type}:{upload_id}"))
