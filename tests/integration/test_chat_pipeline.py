"""The chat decision on both databases: rules, moderation rights, history, effects."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from chat.effects import EffectFlusher, effect_event_id
from chat.history import history_page
from chat.models import MessageRow
from chat.pipeline import ChatPipeline, Rules
from common.db import session_factory
from events.catalog import ChatAccepted, ChatEffect, ChatModeration, ChatRejected
from events.chat_queries import HistoryQuery
from events.envelope import Event
from tests.integration.chat_helpers import XSS_PAYLOADS, FakeClock, Users, register_users

pytestmark = pytest.mark.integration


@pytest.fixture
def sessions(db_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(db_engine)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def users(sessions: async_sessionmaker[AsyncSession]) -> Users:
    users = Users()
    await register_users(sessions, users)
    return users


@pytest.fixture
def pipeline(sessions: async_sessionmaker[AsyncSession], clock: FakeClock) -> ChatPipeline:
    return ChatPipeline(sessions, Rules(max_chars=500, rate_burst=3, rate_per_s=1.5), clock)


def accepted(events: list[Event]) -> ChatAccepted:
    assert len(events) >= 1, events
    assert isinstance(events[0], ChatAccepted), events
    return events[0]


def rejected(events: list[Event]) -> ChatRejected:
    assert len(events) == 1, events
    assert isinstance(events[0], ChatRejected), events
    return events[0]


def moderation(events: list[Event]) -> ChatModeration:
    assert len(events) == 1, events
    assert isinstance(events[0], ChatModeration), events
    return events[0]


async def test_offsets_history_and_inert_text(
    pipeline: ChatPipeline,
    users: Users,
    clock: FakeClock,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # Some payloads carry URLs; this test is about markup, not the link policy.
    moderation(await pipeline.decide(users.message(users.owner, "/links all")))
    offsets = []
    for number, text in enumerate(XSS_PAYLOADS):
        sender = ("u-alice", "u-bob")[number % 2]
        event = accepted(await pipeline.decide(users.message(sender, text)))
        assert event.text == text  # byte for byte: nothing escaped, nothing stripped
        assert event.user.name == users.names[sender]
        offsets.append(event.offset)
        clock.advance(1)
    assert offsets == list(range(1, len(XSS_PAYLOADS) + 1))
    page = await history_page(sessions, HistoryQuery(stream_id=users.stream, limit=50))
    assert [m.text for m in page.messages] == list(XSS_PAYLOADS)
    assert page.offset == len(XSS_PAYLOADS)
    assert page.epoch
    assert all(m.epoch == page.epoch for m in page.messages)
    after = await history_page(
        sessions, HistoryQuery(stream_id=users.stream, after_offset=8, limit=50)
    )
    assert [m.offset for m in after.messages] == [9, 10]
    assert after.complete
    partial = await history_page(
        sessions, HistoryQuery(stream_id=users.stream, after_offset=0, limit=3)
    )
    assert [m.offset for m in partial.messages] == [1, 2, 3]
    assert not partial.complete


async def test_redelivery_returns_the_same_outcome(
    pipeline: ChatPipeline, users: Users, sessions: async_sessionmaker[AsyncSession]
) -> None:
    message = users.message("u-alice", "once 🔥")
    first = await pipeline.decide(message)
    again = await pipeline.decide(message)
    assert again == first  # same events, same ids: JetStream drops the republish
    async with sessions() as session:
        count = await session.scalar(select(func.count()).select_from(MessageRow))
    assert count == 1
    refused = users.message("u-alice", "x" * 501)
    assert await pipeline.decide(refused) == await pipeline.decide(refused)


async def test_rate_limit_reason_and_refill(
    pipeline: ChatPipeline, users: Users, clock: FakeClock
) -> None:
    for _ in range(3):
        accepted(await pipeline.decide(users.message("u-alice", "spam")))
    refusal = rejected(await pipeline.decide(users.message("u-alice", "spam")))
    assert refusal.code == "rate_limited"
    assert "3 messages per 2 s" in refusal.reason
    assert (refusal.gateway_id, refusal.client_id) == ("gw-test", "client-1")
    accepted(await pipeline.decide(users.message("u-bob", "others are fine")))
    clock.advance(0.7)
    accepted(await pipeline.decide(users.message("u-alice", "one token back")))


async def test_channel_rate_limit_is_configurable(
    pipeline: ChatPipeline, users: Users, clock: FakeClock
) -> None:
    moderation(await pipeline.decide(users.message(users.owner, "/ratelimit 1 10")))
    accepted(await pipeline.decide(users.message("u-alice", "one")))
    refusal = rejected(await pipeline.decide(users.message("u-alice", "two")))
    assert "1 messages per 10 s" in refusal.reason
    clock.advance(10)
    accepted(await pipeline.decide(users.message("u-alice", "two")))


async def test_slow_mode(pipeline: ChatPipeline, users: Users, clock: FakeClock) -> None:
    event = moderation(await pipeline.decide(users.message(users.owner, "/slow 10")))
    assert (event.action, event.seconds) == ("slow", 10)
    accepted(await pipeline.decide(users.message("u-alice", "first")))
    clock.advance(4)
    refusal = rejected(await pipeline.decide(users.message("u-alice", "second")))
    assert (refusal.code, refusal.reason) == (
        "slow_mode",
        "slow mode: one message every 10 s; wait 6 s",
    )
    accepted(await pipeline.decide(users.message(users.owner, "streamers are exempt")))
    accepted(await pipeline.decide(users.message(users.owner, "twice")))
    clock.advance(6)
    accepted(await pipeline.decide(users.message("u-alice", "second")))


async def test_moderation_rights(pipeline: ChatPipeline, users: Users, clock: FakeClock) -> None:
    # A viewer cannot moderate.
    assert (
        rejected(await pipeline.decide(users.message("u-alice", "/ban bob"))).code == "not_allowed"
    )
    # The streamer appoints a moderator; a moderator cannot appoint one.
    event = moderation(await pipeline.decide(users.message(users.owner, "/mod moddy")))
    assert (event.action, event.target_user_id) == ("mod", "u-mod")
    assert (
        rejected(await pipeline.decide(users.message("u-mod", "/mod alice"))).code == "not_allowed"
    )
    # The moderator bans a viewer, who is then refused.
    ban = moderation(await pipeline.decide(users.message("u-mod", "/ban @Bob")))
    assert (ban.action, ban.target_user_id, ban.actor_user_id) == ("ban", "u-bob", "u-mod")
    assert rejected(await pipeline.decide(users.message("u-bob", "hi"))).code == "banned"
    moderation(await pipeline.decide(users.message("u-mod", "/unban bob")))
    accepted(await pipeline.decide(users.message("u-bob", "hi again")))
    # Timeouts end by themselves.
    moderation(await pipeline.decide(users.message("u-mod", "/timeout alice 30")))
    refusal = rejected(await pipeline.decide(users.message("u-alice", "hi")))
    assert (refusal.code, refusal.reason) == ("timed_out", "you are timed out for 30 more s")
    clock.advance(31)
    accepted(await pipeline.decide(users.message("u-alice", "back")))
    # Nobody bans the streamer; only the streamer bans a moderator.
    assert (
        rejected(await pipeline.decide(users.message("u-mod", "/ban streamer"))).code
        == "not_allowed"
    )
    moderation(await pipeline.decide(users.message(users.owner, "/mod alice")))
    assert (
        rejected(await pipeline.decide(users.message("u-mod", "/ban alice"))).code == "not_allowed"
    )
    assert (
        rejected(await pipeline.decide(users.message(users.owner, "/ban nobody"))).code
        == "unknown_user"
    )
    assert (
        rejected(await pipeline.decide(users.message(users.owner, "/teleport"))).code
        == "unknown_command"
    )
    # Anonymous messages never get this far, but the component refuses them too.
    assert rejected(await pipeline.decide(users.message("", "hi"))).code == "not_allowed"


def outcome_of(events: list[Event]) -> str:
    """An outcome in one word: the refusal code, the command, or the offset."""
    first = events[0]
    if isinstance(first, ChatRejected):
        return first.code
    if isinstance(first, ChatModeration):
        return f"/{first.action}"
    return f"#{accepted(events).offset}"


async def test_a_batch_decides_as_one_by_one(
    pipeline: ChatPipeline, users: Users, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """One transaction, read once per batch: a command changes what the messages after
    it in the same batch see; a duplicate or redelivered event is decided once."""
    moderation(await pipeline.decide(users.message(users.owner, "/mod moddy")))
    moderation(await pipeline.decide(users.message("u-mod", "/timeout alice 30")))
    twice = users.message("u-bob", "twice")
    batch = [
        users.message("u-alice", "hi"),
        users.message(users.owner, "/ban alice"),  # replaces the timeout read above
        users.message("u-alice", "still?"),
        users.message("u-bob", "frog"),
        users.message("u-mod", "/banword frog"),
        users.message("u-bob", "frog"),
        twice,
        users.message(users.owner, "/unban alice"),
        users.message("u-alice", "back"),
        twice,
    ]
    outcomes = await pipeline.decide_batch(batch)
    assert [outcome_of(o) for o in outcomes] == [
        "timed_out",
        "/ban",
        "banned",
        "#1",
        "/banword",
        "banned_word",
        "#2",
        "/unban",
        "#3",
        "#2",
    ]
    assert outcomes[-1] == outcomes[6]
    # Redelivered as a batch: the stored outcomes, nothing decided or stored again.
    assert await pipeline.decide_batch(batch) == outcomes
    async with sessions() as session:
        texts = (await session.scalars(select(MessageRow.text).order_by(MessageRow.seq))).all()
    assert texts == ["frog", "twice", "back"]


async def test_a_batch_spans_channels_and_unknown_senders(
    pipeline: ChatPipeline, users: Users, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Each channel of a batch keeps its own offsets; a sender the chat component does
    not know yet (no ``chat_users`` row) has a bucket too, carried through the batch
    and into the next one."""
    other = "chan2"
    batch = [
        users.message("u-ghost", "1"),
        users.message("u-alice", "a", stream_id=other),
        users.message("u-ghost", "2"),
        users.message("u-ghost", "3"),
        users.message("u-ghost", "4"),  # the bucket holds 3
        users.message("u-ghost", "elsewhere", stream_id=other),  # one bucket per channel
    ]
    outcomes = await pipeline.decide_batch(batch)
    assert [outcome_of(o) for o in outcomes] == ["#1", "#1", "#2", "#3", "rate_limited", "#2"]
    assert accepted(outcomes[0]).user.name == "user--ghost"  # no name known: from the id
    # The next batch reads the stored bucket: still empty.
    again = await pipeline.decide_batch([users.message("u-ghost", "5")])
    assert outcome_of(again[0]) == "rate_limited"
    async with sessions() as session:
        rows = (
            await session.execute(
                select(MessageRow.stream_id, MessageRow.seq, MessageRow.text).order_by(
                    MessageRow.stream_id, MessageRow.seq
                )
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        ("chan1", 1, "1"),
        ("chan1", 2, "2"),
        ("chan1", 3, "3"),
        (other, 1, "a"),
        (other, 2, "elsewhere"),
    ]


async def test_banned_words_and_links(pipeline: ChatPipeline, users: Users) -> None:
    moderation(await pipeline.decide(users.message(users.owner, "/banword heck")))
    refusal = rejected(await pipeline.decide(users.message("u-alice", "what the HECK")))
    assert refusal.code == "banned_word"
    assert "heck" not in refusal.reason.lower()  # the word is not echoed to chat
    # Links: moderators only by default.
    assert (
        rejected(await pipeline.decide(users.message("u-alice", "see https://x.example"))).code
        == "link_not_allowed"
    )
    accepted(await pipeline.decide(users.message(users.owner, "see https://vod.example")))
    moderation(await pipeline.decide(users.message(users.owner, "/links all")))
    accepted(await pipeline.decide(users.message("u-bob", "see www.ok.tv")))
    moderation(await pipeline.decide(users.message(users.owner, "/links none")))
    assert (
        rejected(await pipeline.decide(users.message(users.owner, "me.com"))).code
        == "link_not_allowed"
    )


async def test_length_and_control_characters(pipeline: ChatPipeline, users: Users) -> None:
    accepted(await pipeline.decide(users.message("u-alice", "y" * 500)))
    assert rejected(await pipeline.decide(users.message("u-bob", "y" * 501))).code == "too_long"
    assert (
        rejected(await pipeline.decide(users.message("u-bob", "a\u202eb"))).code == "invalid_text"
    )


async def test_clear_hides_history(
    pipeline: ChatPipeline, users: Users, sessions: async_sessionmaker[AsyncSession]
) -> None:
    accepted(await pipeline.decide(users.message("u-alice", "old")))
    accepted(await pipeline.decide(users.message("u-bob", "older")))
    event = moderation(await pipeline.decide(users.message(users.owner, "/clear")))
    assert event.through_offset == 2
    accepted(await pipeline.decide(users.message("u-alice", "new")))
    page = await history_page(sessions, HistoryQuery(stream_id=users.stream))
    assert [m.text for m in page.messages] == ["new"]


async def test_effects_aggregated_per_channel_per_second(
    pipeline: ChatPipeline,
    users: Users,
    clock: FakeClock,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    clock.now = 1_800_000_000_000  # a window boundary
    published: list[ChatEffect] = []

    async def publish(effect: ChatEffect) -> None:
        published.append(effect)

    flusher = EffectFlusher(sessions, publish, clock)
    sent = ["🎉🎉 party", "❤️ love", "🔥", "no effect"]
    for number, text in enumerate(sent):
        sender = ("u-alice", "u-bob")[number % 2]
        event = accepted(await pipeline.decide(users.message(sender, text)))
        clock.advance(0.1)
    assert event.effects == []
    assert await flusher.flush_once() == 0  # the window has not closed yet
    clock.advance(1.0)
    accepted(await pipeline.decide(users.message("u-owner", "👏 next second", stream_id="other")))
    clock.advance(0.2)  # the first window closed (+ grace), the second has not
    assert await flusher.flush_once() == 1
    assert len(published) == 1
    effect = published[0]
    assert effect.stream_id == users.stream
    assert effect.window_start_ms == 1_800_000_000_000
    assert effect.counts == {"🎉": 2, "❤️": 1, "🔥": 1}
    assert effect.event_id == effect_event_id(users.stream, effect.window_start_ms)
    assert await flusher.flush_once() == 0  # published once
    clock.advance(1.0)
    assert await flusher.flush_once() == 1  # the other channel's window
    assert published[1].counts == {"👏": 1}
    assert await flusher.flush_once() == 0


async def test_effects_of_a_batch_and_of_a_late_decision(
    pipeline: ChatPipeline,
    users: Users,
    clock: FakeClock,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    start = clock.now = 1_800_000_000_000  # a window boundary
    published: list[ChatEffect] = []

    async def publish(effect: ChatEffect) -> None:
        published.append(effect)

    flusher = EffectFlusher(sessions, publish, clock)
    # One batch: the counts add up per channel per second.
    outcomes = await pipeline.decide_batch(
        [
            users.message("u-alice", "🔥🔥"),
            users.message("u-bob", "🔥 ❤️"),
            users.message("u-alice", "🎉", stream_id="other"),
        ]
    )
    assert all(isinstance(o[0], ChatAccepted) for o in outcomes)
    clock.advance(1.6)
    assert await flusher.flush_once() == 2
    assert {e.stream_id: e.counts for e in published} == {
        users.stream: {"🔥": 3, "❤️": 1},
        "other": {"🎉": 1},
    }
    # A decision whose clock still says the published second: counted in the next.
    clock.now = start + 500
    accepted(await pipeline.decide(users.message("u-bob", "👏 late")))
    clock.now = start + 2600
    assert await flusher.flush_once() == 1
    assert (published[-1].window_start_ms, published[-1].counts) == (start + 1000, {"👏": 1})
