"""Ingest's tables on SQLite and PostgreSQL: key rotations and publisher leases."""

from __future__ import annotations

import datetime as dt
import secrets

import msgspec
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from common.db import session_factory
from events.catalog import ChannelKeyRotated
from events.errors import PermanentError
from ingest.auth import hash_key
from ingest.keys import Channel, KeyStore, PublisherLeases

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 5, 22, 12, 0, tzinfo=dt.UTC)


def rotation(stream_id: str, key: str, *, at: dt.datetime, event_id: str = "") -> ChannelKeyRotated:
    event = ChannelKeyRotated(
        stream_id=stream_id, user_id="u1", key_hash=hash_key(key), occurred_at=at
    )
    return msgspec.structs.replace(event, event_id=event_id) if event_id else event


async def test_the_newest_rotation_wins_whatever_the_delivery_order(db_engine: AsyncEngine) -> None:
    keys = KeyStore(session_factory(db_engine))
    old, new = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    first = rotation("s1", old, at=T0)
    second = rotation("s1", new, at=T0 + dt.timedelta(seconds=5))

    assert await keys.apply_rotation(first) is True
    assert await keys.lookup(hash_key(old)) == Channel("s1", "u1")
    assert await keys.apply_rotation(second) is True
    assert await keys.lookup(hash_key(old)) is None  # the old key stops working
    assert await keys.lookup(hash_key(new)) == Channel("s1", "u1")
    # A redelivery, or the older event arriving late, changes nothing.
    assert await keys.apply_rotation(second) is False
    assert await keys.apply_rotation(first) is False
    assert await keys.lookup(hash_key(new)) == Channel("s1", "u1")
    # A restarted ingest (a new store on the same database) knows every key.
    assert await KeyStore(session_factory(db_engine)).lookup(hash_key(new)) == Channel("s1", "u1")
    assert await keys.count() == 1


async def test_rotations_at_the_same_instant_are_ordered_by_event_id(
    db_engine: AsyncEngine,
) -> None:
    keys = KeyStore(session_factory(db_engine))
    a, b = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    later = rotation("s2", b, at=T0, event_id="01900000-0000-7000-8000-000000000002")
    earlier = rotation("s2", a, at=T0, event_id="01900000-0000-7000-8000-000000000001")
    assert await keys.apply_rotation(later)
    assert not await keys.apply_rotation(earlier)
    assert await keys.lookup(hash_key(b)) == Channel("s2", "u1")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"hash_algorithm": "md5"}, "unsupported hash_algorithm 'md5'"),
        ({"key_hash": "not-hex"}, "key_hash is not a SHA-256 hex digest"),
    ],
)
async def test_malformed_rotations_are_permanent_errors(
    db_engine: AsyncEngine, changes: dict[str, str], message: str
) -> None:
    keys = KeyStore(session_factory(db_engine))
    event = rotation("s3", "k", at=T0)
    bad = ChannelKeyRotated(
        stream_id="s3",
        user_id="u1",
        key_hash=changes.get("key_hash", event.key_hash),
        hash_algorithm=changes.get("hash_algorithm", "sha256"),
    )
    with pytest.raises(PermanentError, match=message):
        await keys.apply_rotation(bad)


async def test_one_lease_per_channel(db_engine: AsyncEngine) -> None:
    sessions = session_factory(db_engine)
    here, there = PublisherLeases(sessions, instance="a"), PublisherLeases(sessions, instance="b")
    assert await here.claim("s1", "sess-1", ttl_s=30)
    assert not await there.claim("s1", "sess-2", ttl_s=30)  # held, not lapsed
    assert await there.claim("s2", "sess-3", ttl_s=30)  # other channels are free
    await here.release("s1", "sess-other")  # only the holder releases
    assert not await there.claim("s1", "sess-2", ttl_s=30)
    await here.release("s1", "sess-1")
    assert await there.claim("s1", "sess-2", ttl_s=30)


async def test_a_lapsed_lease_can_be_taken_and_renewal_keeps_it(db_engine: AsyncEngine) -> None:
    sessions = session_factory(db_engine)
    dead, alive = (
        PublisherLeases(sessions, instance="dead"),
        PublisherLeases(sessions, instance="x"),
    )
    assert await dead.claim("s1", "sess-dead", ttl_s=-1)  # as if its process died a while ago
    assert await alive.claim("s1", "sess-new", ttl_s=-1)
    await alive.renew(["sess-new"], ttl_s=30)
    assert not await dead.claim("s1", "sess-dead-again", ttl_s=30)
