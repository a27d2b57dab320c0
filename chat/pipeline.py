"""Deciding one ``chat.message``: accept (with the channel's next offset) or refuse.

One database transaction per batch of messages (``chat.batcher``), in this order:

1. claim the events (``processed_events``, one statement): a redelivery finds the claim
   and gets the stored outcome back instead of a second decision;
2. lock the channels' rows (the banned words come with the lock): decisions of one
   channel run one at a time across every chat worker, so the offsets
   (``last_offset + 1``) follow the decision order with no gap, and per-channel state
   (slow mode, buckets, bans) is read and written safely; then what the batch's
   senders need (names, buckets, bans, moderator rights) comes in one statement;
3. the rules, each refusing with a code and a reason the sender sees:
   text (length, control characters) → bans and timeouts → slow mode → rate limit →
   banned words → link policy → super chat funds;
   or, for ``/commands``: parse → rights (streamer; mods for all but /mod) → apply;
4. on acceptance: the message row (history), the user's bucket, effect counts, the
   ledger transfer for a super chat;
5. the outcome events, stored with the claim (``chat_outcomes``); message and outcome
   rows go in with one INSERT each at the end of the batch.

Every statement costs a round trip and, on a busy machine, two context switches: a
batch of plain messages runs five (BEGIN, claim, the lock-and-read per channel, the
write, COMMIT) whatever its size, with Core, not the ORM (``chat.decision_rows``: the
ORM's bookkeeping was most of a decision's CPU).

The caller publishes the outcome after commit; if that fails the message is
redelivered, finds its claim, and the same events (same ids: JetStream drops
duplicates, gateways drop offsets they delivered) go out again.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

import msgspec
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chat import ledger, ratelimit
from chat.commands import OWNER_ONLY, TARGETED, Command, CommandError, parse_command
from chat.decision_rows import (
    Ban,
    Channel,
    Sender,
    UserState,
    lock_channel,
    write_decisions,
)
from chat.effects import add_counts, window_of
from chat.models import BannedWordRow, BanRow, ChatUserRow, ModRow, OutcomeRow, UserStateRow
from chat.sql import insert_ignore
from chat.text import banned_word_in, check_text, contains_link, effects_in
from chat.tiers import MAX_AMOUNT, superchat_info
from common.idempotency import claim_events
from common.settings import Settings
from events.catalog import (
    ChatAccepted,
    ChatMessage,
    ChatModeration,
    ChatRejected,
    ChatSuperchat,
    ChatUser,
    decode_event,
    encode_event,
)
from events.envelope import Event

CONSUMER: Final = "chat"
COMPONENT: Final = "chat"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Rules:
    max_chars: int
    rate_burst: int
    rate_per_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Rules:
        return cls(settings.chat_max_chars, settings.chat_rate_burst, settings.chat_rate_per_s)


@dataclass
class _Batch:
    """What the decisions of one transaction look up once: the locked channel rows, and
    per channel its owner, moderators, banned words, and per sender its ban and bucket,
    and user names. A command may change a channel's moderators, words or bans: it
    forgets that channel's entries (the next decision reads them again).

    What is written when the batch's decisions are made: the channels (offsets, rules),
    ``changed_states`` (buckets), ``messages`` and ``outcomes`` (rows to insert).
    """

    channels: dict[str, Channel] = field(default_factory=dict)
    owners: dict[str, str | None] = field(default_factory=dict)
    mods: dict[tuple[str, str], bool] = field(default_factory=dict)
    words: dict[str, frozenset[str]] = field(default_factory=dict)
    names: dict[str, str | None] = field(default_factory=dict)
    bans: dict[tuple[str, str], Ban | None] = field(default_factory=dict)
    states: dict[tuple[str, str], UserState | None] = field(default_factory=dict)
    changed_states: dict[tuple[str, str], UserState] = field(default_factory=dict)
    messages: list[dict[str, object]] = field(default_factory=list)
    outcomes: list[dict[str, object]] = field(default_factory=list)
    effects: dict[tuple[str, int], Counter[str]] = field(default_factory=dict)

    def add_effects(self, stream_id: str, ts_ms: int, counts: Mapping[str, int]) -> None:
        self.effects.setdefault((stream_id, window_of(ts_ms)), Counter()).update(counts)

    def know(self, stream_id: str, senders: dict[str, Sender]) -> None:
        for user_id, sender in senders.items():
            key = (stream_id, user_id)
            self.names[user_id] = sender.name
            self.states[key] = sender.state
            self.bans[key] = sender.ban
            self.mods[key] = sender.is_mod

    def forget(self, stream_id: str) -> None:
        self.owners.pop(stream_id, None)
        self.words.pop(stream_id, None)
        for cache in (self.mods, self.bans):
            for key in [k for k in cache if k[0] == stream_id]:
                del cache[key]


@dataclass
class _Context:
    session: AsyncSession
    channel: Channel
    message: ChatMessage
    now: int
    owner_id: str | None
    is_owner: bool
    is_mod: bool
    batch: _Batch

    def reject(self, code: str, reason: str) -> list[Event]:
        m = self.message
        return [
            ChatRejected(
                message_id=m.message_id,
                stream_id=m.stream_id,
                user_id=m.user.id,
                code=code,
                reason=reason,
                gateway_id=m.gateway_id,
                client_id=m.client_id,
                producer=COMPONENT,
                correlation_id=m.event_id,
            )
        ]


class ChatPipeline:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        rules: Rules,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self.sessions = sessions
        self.rules = rules
        self.clock_ms = clock_ms
        # Across batches, only what never changes once known: a channel's streamer (an
        # unknown one is looked up again: they may register later).
        self._owners: dict[str, str] = {}

    async def decide(self, message: ChatMessage) -> list[Event]:
        return (await self.decide_batch([message]))[0]

    async def decide_batch(self, messages: list[ChatMessage]) -> list[list[Event]]:
        """Several decisions in one transaction (group commit), in the given order.

        Each sees the ones before it (the batch's lookups are updated as decisions
        change them, and a command makes them be read again), so the outcome is the
        one ``decide`` would give one after the other; a busy channel pays one commit
        and a few statements per batch instead of a dozen per message.
        """
        batch = _Batch()
        async with self.sessions.begin() as session:
            claimed = await claim_events(session, CONSUMER, [m.event_id for m in messages])
            await self._prefetch(session, batch, [m for m in messages if m.event_id in claimed])
            decided: dict[str, list[Event]] = {}
            results: list[list[Event]] = []
            for message in messages:
                events = decided.get(message.event_id)
                if events is None:
                    if message.event_id in claimed:
                        events = await self._decide_claimed(session, message, batch)
                    else:
                        events = await _stored_outcome(session, message.event_id)
                    decided[message.event_id] = events
                results.append(events)
            if batch.outcomes:  # something was decided (else nothing changed)
                conn = await session.connection()
                if batch.effects:
                    await add_counts(conn, batch.effects)
                await write_decisions(
                    conn,
                    batch.channels.values(),
                    batch.changed_states,
                    batch.messages,
                    batch.outcomes,
                )
        return results

    async def _prefetch(
        self, session: AsyncSession, batch: _Batch, messages: list[ChatMessage]
    ) -> None:
        """Lock the batch's channels (in one order: two workers never wait on each
        other in a circle) and read its senders' bans, buckets, rights and names."""
        senders: dict[str, set[str]] = {}
        for message in messages:
            users = senders.setdefault(message.stream_id, set())
            if message.user.id:
                users.add(message.user.id)
        conn = await session.connection()
        for sid in sorted(senders):
            channel, batch.words[sid], known = await lock_channel(conn, sid, senders[sid])
            batch.channels[sid] = channel
            batch.know(sid, known)
            await self._owner(session, batch, sid)

    async def _owner(self, session: AsyncSession, batch: _Batch, stream_id: str) -> str | None:
        if stream_id in batch.owners:
            return batch.owners[stream_id]
        owner_id = self._owners.get(stream_id)
        if owner_id is None:
            owner_id = await session.scalar(
                select(ChatUserRow.user_id).where(ChatUserRow.stream_id == stream_id).limit(1)
            )
            if owner_id is not None:
                self._owners[stream_id] = owner_id
        batch.owners[stream_id] = owner_id
        return owner_id

    async def _decide_claimed(
        self, session: AsyncSession, message: ChatMessage, batch: _Batch
    ) -> list[Event]:
        # Locked once per transaction: the lock (and the row) hold until the commit.
        channel = batch.channels.get(message.stream_id)
        if channel is None:
            conn = await session.connection()
            channel, batch.words[message.stream_id], _ = await lock_channel(conn, message.stream_id)
            batch.channels[message.stream_id] = channel
        ctx = await self._context(session, channel, message, batch)
        if not message.user.id:
            events = ctx.reject("not_allowed", "sign in to chat")
        elif message.text.startswith("/"):
            events = await self._command(ctx)
        else:
            events = await self._message(ctx)
        batch.outcomes.append(
            {
                "event_id": message.event_id,
                "events": msgspec.json.encode(
                    [msgspec.Raw(encode_event(e)) for e in events]
                ).decode(),
                "created_at": dt.datetime.now(dt.UTC),
            }
        )
        return events

    async def _context(
        self, session: AsyncSession, channel: Channel, message: ChatMessage, batch: _Batch
    ) -> _Context:
        sid = channel.stream_id
        owner_id = await self._owner(session, batch, sid)
        user_id = message.user.id
        is_owner = owner_id is not None and owner_id == user_id
        is_mod = is_owner
        if not is_mod and user_id:
            known = batch.mods.get((sid, user_id))
            if known is None:
                known = await session.get(ModRow, (sid, user_id)) is not None
                batch.mods[(sid, user_id)] = known
            is_mod = known
        return _Context(
            session, channel, message, self.clock_ms(), owner_id, is_owner, is_mod, batch
        )

    # --- messages --------------------------------------------------------------------

    async def _message(self, ctx: _Context) -> list[Event]:  # noqa: PLR0911 - one per rule
        channel, message, now = ctx.channel, ctx.message, ctx.now
        user_id = message.user.id
        problem = check_text(message.text, self.rules.max_chars)
        if problem is not None:
            return ctx.reject(*problem)
        banned = await _ban_of(ctx, user_id)
        if banned is not None:
            return ctx.reject(*banned)
        key = (channel.stream_id, user_id)
        state = await _state_of(ctx, key)
        if channel.slow_mode_s > 0 and not ctx.is_mod and state is not None:
            wait_ms = state.last_message_ms + channel.slow_mode_s * 1000 - now
            if wait_ms > 0:
                return ctx.reject(
                    "slow_mode",
                    f"slow mode: one message every {channel.slow_mode_s} s; "
                    f"wait {-(-wait_ms // 1000)} s",
                )
        burst = channel.rate_burst or self.rules.rate_burst
        per_s = channel.rate_per_s or self.rules.rate_per_s
        bucket = ratelimit.Bucket(state.tokens, state.tokens_at_ms) if state else None
        verdict = ratelimit.take(bucket, now_ms=now, burst=burst, per_s=per_s)
        if not verdict.allowed:
            return ctx.reject(
                "rate_limited",
                f"at most {ratelimit.describe(burst, per_s)}; wait {verdict.retry_after_s:.1f} s",
            )
        words = await _banned_words(ctx)
        if banned_word_in(message.text, words) is not None:
            return ctx.reject(
                "banned_word", "the message contains a word this channel does not allow"
            )
        if contains_link(message.text) and not _links_allowed(channel.links, ctx.is_mod):
            who = "nobody" if channel.links == "none" else "moderators only"
            return ctx.reject("link_not_allowed", f"links are not allowed here ({who})")
        superchat = None
        if message.amount:
            refusal = await self._superchat(ctx)
            if refusal is not None:
                return refusal
            superchat = superchat_info(message.amount)
        # Accepted.
        state = UserState(verdict.bucket.tokens, verdict.bucket.at_ms, now)
        ctx.batch.states[key] = ctx.batch.changed_states[key] = state
        channel.last_offset += 1
        offset = channel.last_offset
        name = await _username(ctx, user_id)
        user = ChatUser(id=user_id, name=name or message.user.name or f"user-{user_id[-6:]}")
        counts = effects_in(message.text)
        effects = sorted(counts)
        ctx.batch.messages.append(
            {
                "stream_id": channel.stream_id,
                "seq": offset,
                "message_id": message.message_id,
                "user_id": user_id,
                "user_name": user.name,
                "text": message.text,
                "ts_ms": now,
                "effects": msgspec.json.encode(effects).decode(),
                "superchat": msgspec.json.encode(superchat).decode() if superchat else None,
            }
        )
        if counts:
            ctx.batch.add_effects(channel.stream_id, now, counts)
        accepted = ChatAccepted(
            message_id=message.message_id,
            stream_id=channel.stream_id,
            user=user,
            text=message.text,
            ts=now,
            effects=effects,
            superchat=superchat,
            offset=offset,
            epoch=channel.epoch,
            producer=COMPONENT,
            correlation_id=message.event_id,
        )
        events: list[Event] = [accepted]
        if superchat is not None and ctx.owner_id is not None:
            events.append(
                ChatSuperchat(
                    message_id=message.message_id,
                    stream_id=channel.stream_id,
                    from_user_id=user_id,
                    to_user_id=ctx.owner_id,
                    amount=superchat.amount,
                    tier=superchat.tier,
                    color=superchat.color,
                    pin_seconds=superchat.pin_seconds,
                    text=message.text,
                    producer=COMPONENT,
                    correlation_id=message.event_id,
                )
            )
        return events

    async def _superchat(self, ctx: _Context) -> list[Event] | None:
        message = ctx.message
        if not 0 < message.amount <= MAX_AMOUNT:
            return ctx.reject("bad_amount", f"an amount of 1 to {MAX_AMOUNT} credits")
        if ctx.owner_id is None:
            return ctx.reject("unknown_channel", "this channel has no known streamer yet")
        if ctx.is_owner:
            return ctx.reject("bad_amount", "you cannot super chat your own channel")
        moved = await ledger.transfer(
            ctx.session,
            ledger.Transfer(
                tx_id=f"superchat:{message.message_id}",
                from_user_id=message.user.id,
                to_user_id=ctx.owner_id,
                amount=message.amount,
                stream_id=message.stream_id,
                message_id=message.message_id,
                text=message.text,
            ),
            ctx.now,
        )
        if not moved:
            have = await ledger.balance(ctx.session, message.user.id)
            return ctx.reject(
                "insufficient_funds", f"{message.amount} credits needed, {have} available"
            )
        return None

    # --- commands ---------------------------------------------------------------------

    async def _command(self, ctx: _Context) -> list[Event]:  # noqa: PLR0911 - one per rule
        try:
            command = parse_command(ctx.message.text)
        except CommandError as exc:
            return ctx.reject(exc.code, exc.reason)
        if not ctx.is_mod:
            return ctx.reject("not_allowed", "only the streamer and moderators can do that")
        if command.action in OWNER_ONLY and not ctx.is_owner:
            return ctx.reject("not_allowed", "only the streamer can appoint moderators")
        target_id = ""
        if command.action in TARGETED:
            found = await ctx.session.scalar(
                select(ChatUserRow.user_id).where(ChatUserRow.username_key == command.target)
            )
            if found is None:
                return ctx.reject("unknown_user", f"no user named {command.target}")
            target_id = found
            if command.action in ("ban", "timeout"):
                if target_id == ctx.owner_id:
                    return ctx.reject("not_allowed", "the streamer cannot be banned")
                target_is_mod = (
                    await ctx.session.get(ModRow, (ctx.channel.stream_id, target_id)) is not None
                )
                if target_is_mod and not ctx.is_owner:
                    return ctx.reject("not_allowed", "only the streamer can ban a moderator")
        through = await self._apply(ctx, command, target_id)
        ctx.batch.forget(ctx.channel.stream_id)
        m = ctx.message
        return [
            ChatModeration(
                stream_id=m.stream_id,
                actor_user_id=m.user.id,
                action=command.action,
                target_user_id=target_id,
                seconds=command.seconds,
                message_id=m.message_id,
                through_offset=through,
                value=command.value,
                producer=COMPONENT,
                correlation_id=m.event_id,
            )
        ]

    async def _apply(self, ctx: _Context, command: Command, target_id: str) -> int:
        """Apply a moderation command; returns the cleared-through offset for /clear."""
        session, channel, now = ctx.session, ctx.channel, ctx.now
        sid = channel.stream_id
        actor = ctx.message.user.id
        created = dt.datetime.now(dt.UTC)
        match command.action:
            case "ban" | "timeout":
                until = None if command.action == "ban" else now + command.seconds * 1000
                await session.execute(
                    delete(BanRow).where(BanRow.stream_id == sid, BanRow.user_id == target_id)
                )
                session.add(
                    BanRow(
                        stream_id=sid,
                        user_id=target_id,
                        until_ms=until,
                        actor_user_id=actor,
                        created_at=created,
                    )
                )
            case "unban":
                await session.execute(
                    delete(BanRow).where(BanRow.stream_id == sid, BanRow.user_id == target_id)
                )
            case "mod":
                await insert_ignore(
                    session,
                    ModRow,
                    {
                        "stream_id": sid,
                        "user_id": target_id,
                        "granted_by": actor,
                        "created_at": created,
                    },
                    ["stream_id", "user_id"],
                )
            case "unmod":
                await session.execute(
                    delete(ModRow).where(ModRow.stream_id == sid, ModRow.user_id == target_id)
                )
            case "slow":
                channel.slow_mode_s = command.seconds
            case "clear":
                channel.cleared_offset = channel.last_offset
                return channel.last_offset
            case "ratelimit":
                if command.value:
                    count = int(command.value.split("/")[0])
                    channel.rate_burst = count
                    channel.rate_per_s = count / command.seconds
                else:
                    channel.rate_burst = None
                    channel.rate_per_s = None
            case "banword":
                await insert_ignore(
                    session,
                    BannedWordRow,
                    {"stream_id": sid, "word": command.value},
                    ["stream_id", "word"],
                )
            case "unbanword":
                await session.execute(
                    delete(BannedWordRow).where(
                        BannedWordRow.stream_id == sid, BannedWordRow.word == command.value
                    )
                )
            case "links":
                channel.links = command.value
        return 0


def _links_allowed(policy: str, is_mod: bool) -> bool:
    if policy == "all":
        return True
    if policy == "none":
        return False
    return is_mod


async def _banned_words(ctx: _Context) -> frozenset[str]:
    sid = ctx.channel.stream_id
    words = ctx.batch.words.get(sid)
    if words is None:
        rows = await ctx.session.scalars(
            select(BannedWordRow.word).where(BannedWordRow.stream_id == sid)
        )
        words = ctx.batch.words[sid] = frozenset(rows.all())
    return words


async def _username(ctx: _Context, user_id: str) -> str | None:
    names = ctx.batch.names
    if user_id not in names:
        names[user_id] = await ctx.session.scalar(
            select(ChatUserRow.username).where(ChatUserRow.user_id == user_id)
        )
    return names[user_id]


async def _state_of(ctx: _Context, key: tuple[str, str]) -> UserState | None:
    if key in ctx.batch.states:
        return ctx.batch.states[key]
    row = await ctx.session.get(UserStateRow, key)
    state = None if row is None else UserState(row.tokens, row.tokens_at_ms, row.last_message_ms)
    ctx.batch.states[key] = state
    return state


async def _ban_of(ctx: _Context, user_id: str) -> tuple[str, str] | None:
    key = (ctx.channel.stream_id, user_id)
    if key in ctx.batch.bans:
        ban = ctx.batch.bans[key]
    else:  # a command in this batch may have changed the bans: read again
        row = await ctx.session.get(BanRow, key)
        ban = None if row is None else Ban(row.until_ms)
    if ban is None:
        return None
    now = ctx.now
    if ban.until_ms is None:
        return "banned", "you are banned from this chat"
    if ban.until_ms > now:
        return "timed_out", f"you are timed out for {-(-(ban.until_ms - now) // 1000)} more s"
    await ctx.session.execute(  # expired
        delete(BanRow).where(BanRow.stream_id == key[0], BanRow.user_id == key[1])
    )
    ctx.batch.bans[key] = None
    return None


async def _stored_outcome(session: AsyncSession, event_id: str) -> list[Event]:
    row = await session.get(OutcomeRow, event_id)
    if row is None:
        return []  # claimed by an older version without outcomes: nothing to resend
    raws = msgspec.json.decode(row.events, type=list[msgspec.Raw])
    return [decode_event(bytes(raw)) for raw in raws]
