"""Reading the chat history for the gateways (``rpc.chat.history``).

Messages come back as the ``chat.accepted`` events they were, so a gateway builds a
history publication and a live one with the same code, byte for byte. A moderator's
``/clear`` hides everything up to its offset. Read-only.
"""

from __future__ import annotations

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chat.decision_rows import new_channel
from chat.models import ChannelRow, ChatUserRow, MessageRow
from chat.sql import insert_ignore
from events.catalog import ChatAccepted, ChatUser, SuperChatInfo
from events.chat_queries import MAX_HISTORY_LIMIT, HistoryPage, HistoryQuery


def _accepted(row: MessageRow, epoch: str) -> ChatAccepted:
    superchat = msgspec.json.decode(row.superchat, type=SuperChatInfo) if row.superchat else None
    return ChatAccepted(
        message_id=row.message_id,
        stream_id=row.stream_id,
        user=ChatUser(id=row.user_id, name=row.user_name),
        text=row.text,
        ts=row.ts_ms,
        effects=msgspec.json.decode(row.effects, type=list[str]),
        superchat=superchat,
        offset=row.seq,
        epoch=epoch,
        producer="chat",
    )


async def _channel(sessions: async_sessionmaker[AsyncSession], stream_id: str) -> ChannelRow | None:
    """The channel; a known streamer's is created on first sight, so the epoch its
    first subscribers get is the one its messages will carry (Centrifugo does the
    same: a stream's epoch exists before its first publication)."""
    async with sessions() as session:
        channel = await session.get(ChannelRow, stream_id)
        if channel is not None:
            return channel
        owner = await session.scalar(
            select(ChatUserRow.user_id).where(ChatUserRow.stream_id == stream_id).limit(1)
        )
    if owner is None:
        return None
    async with sessions.begin() as session:
        await insert_ignore(session, ChannelRow, new_channel(stream_id), ["stream_id"])
    async with sessions() as session:
        return await session.get(ChannelRow, stream_id)


async def history_page(
    sessions: async_sessionmaker[AsyncSession], query: HistoryQuery
) -> HistoryPage:
    limit = max(0, min(query.limit, MAX_HISTORY_LIMIT))
    channel = await _channel(sessions, query.stream_id)
    if channel is None:
        # Not a known streamer's channel: nothing is created for a name any client can
        # make up. If messages come after all, the first one creates the channel and
        # its epoch, and gateways that saw the empty epoch "" reload then.
        return HistoryPage(epoch="", offset=0, complete=True)
    floor = channel.cleared_offset
    async with sessions() as session:
        # The channel row and the messages from one snapshot would be nicer; reading the
        # messages after the row is enough: offsets only grow, and `offset` is re-read.
        top = await session.scalar(
            select(ChannelRow.last_offset).where(ChannelRow.stream_id == query.stream_id)
        )
        top = int(top or 0)
        stmt = select(MessageRow).where(
            MessageRow.stream_id == query.stream_id, MessageRow.seq > floor, MessageRow.seq <= top
        )
        complete = True
        if query.after_offset is not None:
            stmt = stmt.where(MessageRow.seq > query.after_offset).order_by(MessageRow.seq)
            rows = list((await session.scalars(stmt.limit(limit))).all())
            # Fewer than asked for: that was all of it.
            complete = len(rows) < limit or (bool(rows) and rows[-1].seq >= top)
        else:
            if query.before_offset > 0:
                stmt = stmt.where(MessageRow.seq < query.before_offset)
            stmt = stmt.order_by(MessageRow.seq.desc())
            rows = list((await session.scalars(stmt.limit(limit))).all())
            rows.reverse()
    return HistoryPage(
        epoch=channel.epoch,
        offset=top,
        messages=[_accepted(row, channel.epoch) for row in rows],
        complete=complete,
    )
