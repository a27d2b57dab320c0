"""The decision transaction's reads and writes, in as few statements as the database allows.

A chat decision is a little Python between a read and a write, so its cost was the
SQLAlchemy ORM around the statements (identity map, unit of work, flush) more than the
statements: ~6.5 ms of worker CPU per message for seven of them. Here the batch's
rows are plain dataclasses read and written with Core:

- :func:`lock_channel`: one statement per channel locks its row (``FOR UPDATE`` on
  PostgreSQL; SQLite has one writer) and brings the channel's banned words and, for
  each of the batch's senders, name, bucket, ban and moderator right (JSON
  aggregates, so one row whatever the number of senders);
- :func:`write_decisions`: what the decisions changed (channels, buckets) and made
  (history rows, stored outcomes) goes in at the end. On PostgreSQL that is one
  statement (data-modifying CTEs over ``jsonb_to_recordset``); SQLite, which has no
  data-modifying CTEs, takes one statement per table (no network there).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Final, cast

import msgspec
from sqlalchemy import (
    JSON,
    Table,
    and_,
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import BindParameter

from chat.models import (
    BannedWordRow,
    BanRow,
    ChannelRow,
    ChatUserRow,
    MessageRow,
    ModRow,
    OutcomeRow,
    UserStateRow,
)
from chat.sql import insert_ignore, upsert

__all__ = [
    "Ban",
    "Channel",
    "Sender",
    "UserState",
    "lock_channel",
    "new_channel",
    "new_epoch",
    "write_decisions",
]


@dataclass
class Channel:
    """A channel's row, as the decisions read and change it (written back at the end)."""

    stream_id: str
    epoch: str
    last_offset: int
    cleared_offset: int
    slow_mode_s: int
    rate_burst: int | None
    rate_per_s: float | None
    links: str


@dataclass
class UserState:
    """A sender's token bucket and last accepted message in one channel."""

    tokens: float
    tokens_at_ms: int
    last_message_ms: int


@dataclass(frozen=True)
class Ban:
    until_ms: int | None  # None: permanent


@dataclass(frozen=True)
class Sender:
    """What a decision needs of a known sender in one channel."""

    name: str
    state: UserState | None
    ban: Ban | None
    is_mod: bool


_CHANNEL_FIELDS: Final = (
    "stream_id",
    "epoch",
    "last_offset",
    "cleared_offset",
    "slow_mode_s",
    "rate_burst",
    "rate_per_s",
    "links",
)


def new_epoch() -> str:
    return secrets.token_hex(4)


def new_channel(stream_id: str) -> dict[str, object]:
    """A new channel row: a fresh epoch, no messages, default rules."""
    return {
        "stream_id": stream_id,
        "epoch": new_epoch(),
        "last_offset": 0,
        "cleared_offset": 0,
        "slow_mode_s": 0,
        "links": "mods",
        "created_at": dt.datetime.now(dt.UTC),
    }


def _is_postgres(conn: AsyncConnection) -> bool:
    return conn.dialect.name == "postgresql"


def _locking_read(postgres: bool, with_senders: bool) -> Any:
    """The channel row, its banned words and (when asked) its senders, as one row."""
    # json_agg / json_build_array are PostgreSQL's spelling, json_group_array /
    # json_array SQLite's; no rows gives NULL on the one and [] on the other.
    aggregate = func.json_agg if postgres else func.json_group_array
    array = func.json_build_array if postgres else func.json_array
    sid: BindParameter[str] = bindparam("sid")
    words = (
        select(aggregate(BannedWordRow.word, type_=JSON))
        .where(BannedWordRow.stream_id == sid)
        .scalar_subquery()
    )
    columns: list[Any] = [getattr(ChannelRow, name) for name in _CHANNEL_FIELDS]
    columns.append(words.label("words"))
    if with_senders:
        sender = array(
            ChatUserRow.user_id,
            ChatUserRow.username,
            UserStateRow.tokens,
            UserStateRow.tokens_at_ms,
            UserStateRow.last_message_ms,
            BanRow.stream_id,
            BanRow.until_ms,
            ModRow.user_id,
        )
        senders = (
            select(aggregate(sender, type_=JSON))
            .select_from(ChatUserRow)
            .outerjoin(
                UserStateRow,
                and_(UserStateRow.stream_id == sid, UserStateRow.user_id == ChatUserRow.user_id),
            )
            .outerjoin(BanRow, and_(BanRow.stream_id == sid, BanRow.user_id == ChatUserRow.user_id))
            .outerjoin(ModRow, and_(ModRow.stream_id == sid, ModRow.user_id == ChatUserRow.user_id))
            .where(ChatUserRow.user_id.in_(bindparam("users", expanding=True)))
            .scalar_subquery()
        )
        columns.append(senders.label("senders"))
    # FOR UPDATE on PostgreSQL; SQLite ignores it (the claim's INSERT already holds
    # the write lock).
    return select(*columns).where(ChannelRow.stream_id == sid).with_for_update(of=ChannelRow)


_READS: Final = {(pg, s): _locking_read(pg, s) for pg in (False, True) for s in (False, True)}


def _sender(fields: list[Any]) -> tuple[str, Sender]:
    user_id, name, tokens, tokens_at_ms, last_ms, ban_stream, until_ms, mod_user = fields
    state = None if tokens is None else UserState(float(tokens), int(tokens_at_ms), int(last_ms))
    ban = None if ban_stream is None else Ban(None if until_ms is None else int(until_ms))
    return user_id, Sender(name=name, state=state, ban=ban, is_mod=mod_user is not None)


async def lock_channel(
    conn: AsyncConnection, stream_id: str, senders: Collection[str] = ()
) -> tuple[Channel, frozenset[str], dict[str, Sender]]:
    """The channel (created if new), locked until the transaction ends; its banned
    words; and each of ``senders`` the chat component knows (one without a
    ``chat_users`` row is left out: their decision looks it up alone)."""
    statement = _READS[(_is_postgres(conn), bool(senders))]
    params: dict[str, Any] = {"sid": stream_id}
    if senders:
        params["users"] = list(senders)
    row = (await conn.execute(statement, params)).first()
    if row is None:  # new: create it (a concurrent creator wins), then lock it
        await insert_ignore(conn, ChannelRow, new_channel(stream_id), ["stream_id"])
        row = (await conn.execute(statement, params)).first()
    assert row is not None
    mapping = row._mapping
    channel = Channel(**{name: mapping[name] for name in _CHANNEL_FIELDS})
    words = frozenset(mapping["words"] or ())
    found = dict(_sender(fields) for fields in (mapping.get("senders") or ()))
    return channel, words, found


# --- writing --------------------------------------------------------------------------

_CHANNEL_UPDATE: Final = (
    "stream_id text, last_offset bigint, cleared_offset bigint, slow_mode_s integer, "
    "rate_burst integer, rate_per_s double precision, links text"
)
_STATE_COLUMNS: Final = (
    "stream_id text, user_id text, tokens double precision, tokens_at_ms bigint, "
    "last_message_ms bigint"
)
_MESSAGE_COLUMNS: Final = (
    "stream_id text, seq bigint, message_id text, user_id text, user_name text, text text, "
    "ts_ms bigint, effects text, superchat text"
)
_OUTCOME_COLUMNS: Final = "event_id text, events text, created_at timestamptz"


def _names(columns: str) -> str:
    return ", ".join(part.split()[0] for part in columns.split(", "))


# One statement for the whole write on PostgreSQL: every data-modifying CTE runs once,
# whether the final SELECT reads it or not; the counts say what each did.
_PG_WRITE: Final = text(
    f"""
WITH channels AS (
    UPDATE chat_channels AS c
    SET last_offset = x.last_offset, cleared_offset = x.cleared_offset,
        slow_mode_s = x.slow_mode_s, rate_burst = x.rate_burst,
        rate_per_s = x.rate_per_s, links = x.links
    FROM jsonb_to_recordset(CAST(:channels AS jsonb)) AS x({_CHANNEL_UPDATE})
    WHERE c.stream_id = x.stream_id
    RETURNING 1
), states AS (
    INSERT INTO chat_user_state ({_names(_STATE_COLUMNS)})
    SELECT {_names(_STATE_COLUMNS)}
    FROM jsonb_to_recordset(CAST(:states AS jsonb)) AS x({_STATE_COLUMNS})
    ON CONFLICT (stream_id, user_id) DO UPDATE
    SET tokens = EXCLUDED.tokens, tokens_at_ms = EXCLUDED.tokens_at_ms,
        last_message_ms = EXCLUDED.last_message_ms
    RETURNING 1
), messages AS (
    INSERT INTO chat_messages ({_names(_MESSAGE_COLUMNS)})
    SELECT {_names(_MESSAGE_COLUMNS)}
    FROM jsonb_to_recordset(CAST(:messages AS jsonb)) AS x({_MESSAGE_COLUMNS})
    RETURNING 1
), outcomes AS (
    INSERT INTO chat_outcomes ({_names(_OUTCOME_COLUMNS)})
    SELECT {_names(_OUTCOME_COLUMNS)}
    FROM jsonb_to_recordset(CAST(:outcomes AS jsonb)) AS x({_OUTCOME_COLUMNS})
    RETURNING 1
)
SELECT (SELECT count(*) FROM channels), (SELECT count(*) FROM states),
       (SELECT count(*) FROM messages), (SELECT count(*) FROM outcomes)
"""  # noqa: S608 - made of the constants above, no input
)


def _channel_values(channel: Channel) -> dict[str, object]:
    values = asdict(channel)
    del values["epoch"]  # never changes
    return values


def _state_rows(states: dict[tuple[str, str], UserState]) -> list[dict[str, object]]:
    return [
        {"stream_id": sid, "user_id": uid, **asdict(state)} for (sid, uid), state in states.items()
    ]


async def write_decisions(
    conn: AsyncConnection,
    channels: Iterable[Channel],
    states: dict[tuple[str, str], UserState],
    messages: list[dict[str, object]],
    outcomes: list[dict[str, object]],
) -> None:
    """Write back the batch's channels and buckets, insert its history and outcomes.

    ``outcomes[i]["created_at"]`` is an aware datetime; every other value is JSON-able.
    """
    channel_rows = [_channel_values(c) for c in channels]
    state_rows = _state_rows(states)
    if _is_postgres(conn):
        encoded = {
            "channels": channel_rows,
            "states": state_rows,
            "messages": messages,
            "outcomes": [
                {**o, "created_at": cast(dt.datetime, o["created_at"]).isoformat()}
                for o in outcomes
            ],
        }
        params = {key: msgspec.json.encode(rows).decode() for key, rows in encoded.items()}
        counts = (await conn.execute(_PG_WRITE, params)).one()
        expected = (len(channel_rows), len(state_rows), len(messages), len(outcomes))
        if tuple(counts) != expected:  # a channel row gone under its lock: never expected
            raise RuntimeError(f"chat decisions wrote {tuple(counts)} rows, not {expected}")
        return
    await _write_sqlite(conn, channel_rows, state_rows, messages, outcomes)


async def _write_sqlite(
    conn: AsyncConnection,
    channel_rows: list[dict[str, object]],
    state_rows: list[dict[str, object]],
    messages: list[dict[str, object]],
    outcomes: list[dict[str, object]],
) -> None:
    if channel_rows:
        table = cast(Table, ChannelRow.__table__)
        changed: dict[str, BindParameter[Any]] = {
            k: bindparam(f"new_{k}") for k in channel_rows[0] if k != "stream_id"
        }
        await conn.execute(
            update(table).where(table.c.stream_id == bindparam("key")).values(changed),
            [
                {"key": row["stream_id"], **{f"new_{k}": row[k] for k in changed}}
                for row in channel_rows
            ],
        )
    if state_rows:
        await upsert(
            conn,
            cast(Table, UserStateRow.__table__),
            state_rows,
            keys=["stream_id", "user_id"],
            columns=["tokens", "tokens_at_ms", "last_message_ms"],
        )
    if messages:
        await conn.execute(insert(cast(Table, MessageRow.__table__)), messages)
    if outcomes:
        await conn.execute(insert(cast(Table, OutcomeRow.__table__)), outcomes)
