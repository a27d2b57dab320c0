"""Accounts and channels: ``user.*`` and ``channel.*``. Secrets travel only as hashes."""

from __future__ import annotations

from typing import ClassVar

import msgspec

from events.envelope import Event


class UserRegistered(Event, frozen=True, tag="user.registered"):
    key_field: ClassVar[str] = "user_id"
    user_id: str
    username: str
    # Every user owns one channel; its public id is fixed at registration.
    stream_id: str


class ChannelKeyRotated(Event, frozen=True, tag="channel.key_rotated"):
    """A new stream key: ingest learns its hash, never the key itself."""

    key_field: ClassVar[str] = "stream_id"
    stream_id: str
    user_id: str
    key_hash: str  # hex digest of the key
    hash_algorithm: str = "sha256"


class ChannelUpdated(Event, frozen=True, tag="channel.updated"):
    """Broadcast metadata set by ``POST /api/v2/streams/start`` (before or during a live)."""

    key_field: ClassVar[str] = "stream_id"
    stream_id: str
    user_id: str
    title: str = msgspec.field(default="")
    description: str = ""
