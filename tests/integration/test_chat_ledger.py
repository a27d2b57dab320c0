"""Super chat and the wallet ledger on both databases: exactly once, never negative."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from chat import ledger
from chat.models import LedgerEntryRow, LedgerTransactionRow, MessageRow, WalletRow
from chat.pipeline import ChatPipeline, Rules
from common.db import session_factory
from events.catalog import ChatAccepted, ChatRejected, ChatSuperchat
from tests.integration.chat_helpers import Users, register_users

pytestmark = pytest.mark.integration


@pytest.fixture
def sessions(db_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(db_engine)


@pytest.fixture
async def users(sessions: async_sessionmaker[AsyncSession]) -> Users:
    users = Users()
    await register_users(sessions, users)
    return users


@pytest.fixture
def pipeline(sessions: async_sessionmaker[AsyncSession]) -> ChatPipeline:
    # No rate limit in the way: this is about money.
    return ChatPipeline(sessions, Rules(max_chars=500, rate_burst=10_000, rate_per_s=10_000.0))


async def top_up(
    sessions: async_sessionmaker[AsyncSession], user_id: str, amount: int, tx_id: str
) -> bool:
    async with sessions.begin() as session:
        return await ledger.topup(session, tx_id=tx_id, user_id=user_id, amount=amount, now_ms=1)


async def assert_books_balance(
    sessions: async_sessionmaker[AsyncSession], topped_up: int
) -> dict[str, int]:
    """Every transaction sums to zero, each wallet equals its entries, none negative,
    and the wallets together hold exactly what was topped up."""
    async with sessions() as session:
        per_tx = (
            await session.execute(
                select(LedgerEntryRow.tx_id, func.sum(LedgerEntryRow.amount)).group_by(
                    LedgerEntryRow.tx_id
                )
            )
        ).all()
        assert all(total == 0 for _, total in per_tx)
        wallets = {w.user_id: w.balance for w in (await session.scalars(select(WalletRow))).all()}
        for user_id, balance in wallets.items():
            entries = await session.scalar(
                select(func.coalesce(func.sum(LedgerEntryRow.amount), 0)).where(
                    LedgerEntryRow.user_id == user_id
                )
            )
            assert entries == balance, user_id
            assert balance >= 0
    assert sum(wallets.values()) == topped_up
    return wallets


async def test_topup_is_applied_once(sessions: async_sessionmaker[AsyncSession]) -> None:
    assert await top_up(sessions, "u-alice", 500, "topup:e1") is True
    assert await top_up(sessions, "u-alice", 500, "topup:e1") is False
    assert await top_up(sessions, "u-alice", 20, "topup:e2") is True
    wallets = await assert_books_balance(sessions, 520)
    assert wallets["u-alice"] == 520


async def test_balance_can_never_go_negative(sessions: async_sessionmaker[AsyncSession]) -> None:
    await top_up(sessions, "u-alice", 5, "topup:e1")
    with pytest.raises(IntegrityError):  # the CHECK backs up the conditional debit
        async with sessions.begin() as session:
            await session.execute(
                WalletRow.__table__.update()  # type: ignore[attr-defined]
                .where(WalletRow.user_id == "u-alice")
                .values(balance=-1)
            )


async def test_superchat_moves_credits_with_tier(
    pipeline: ChatPipeline, users: Users, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await top_up(sessions, "u-alice", 1000, "topup:a")
    events = await pipeline.decide(users.message("u-alice", "big fan!", amount=500))
    assert isinstance(events[0], ChatAccepted)
    assert isinstance(events[1], ChatSuperchat)
    info = events[0].superchat
    assert info is not None
    assert (info.amount, info.tier, info.color, info.pin_seconds) == (
        500,
        3,
        "#FFB300",
        120,
    )
    assert (events[1].from_user_id, events[1].to_user_id) == ("u-alice", users.owner)
    refused = await pipeline.decide(users.message("u-alice", "again!", amount=501))
    assert isinstance(refused[0], ChatRejected)
    assert (refused[0].code, refused[0].reason) == (
        "insufficient_funds",
        "501 credits needed, 500 available",
    )
    own = await pipeline.decide(users.message(users.owner, "self", amount=1))
    assert isinstance(own[0], ChatRejected)
    assert own[0].code == "bad_amount"
    wallets = await assert_books_balance(sessions, 1000)
    assert (wallets["u-alice"], wallets[users.owner]) == (500, 500)
    async with sessions() as session:
        view = await ledger.wallet_view(session, users.owner)
    assert (view.balance, view.earnings_total, view.earnings_count) == (500, 500, 1)
    assert view.earnings[0].kind == "superchat_received"
    assert view.earnings[0].counterparty_user_id == "u-alice"
    assert view.earnings[0].text == "big fan!"


async def test_concurrent_superchats_exactly_as_many_as_funded(
    pipeline: ChatPipeline, users: Users, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """100 super chats of 10 at once against 100 credits: exactly 10 succeed."""
    await top_up(sessions, "u-alice", 100, "topup:a")
    messages = [users.message("u-alice", f"sc {n}", amount=10) for n in range(100)]
    outcomes = await asyncio.gather(*(pipeline.decide(m) for m in messages))
    accepted = [o for o in outcomes if isinstance(o[0], ChatAccepted)]
    refused = [o for o in outcomes if isinstance(o[0], ChatRejected)]
    assert len(accepted) == 10
    assert len(refused) == 90
    assert {o[0].code for o in refused if isinstance(o[0], ChatRejected)} == {"insufficient_funds"}
    assert sorted(o[0].offset for o in accepted if isinstance(o[0], ChatAccepted)) == list(
        range(1, 11)
    )
    wallets = await assert_books_balance(sessions, 100)
    assert (wallets["u-alice"], wallets[users.owner]) == (0, 100)


async def test_redelivered_superchat_debits_once(
    pipeline: ChatPipeline, users: Users, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The same chat.message delivered 50 times, concurrently: one debit, one line."""
    await top_up(sessions, "u-alice", 100, "topup:a")
    message = users.message("u-alice", "only once", amount=30)
    outcomes = await asyncio.gather(*(pipeline.decide(message) for _ in range(50)))
    assert all(o == outcomes[0] for o in outcomes)
    assert isinstance(outcomes[0][0], ChatAccepted)
    wallets = await assert_books_balance(sessions, 100)
    assert (wallets["u-alice"], wallets[users.owner]) == (70, 30)
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(MessageRow)) == 1
        assert await session.scalar(select(func.count()).select_from(LedgerTransactionRow)) == 2


async def test_transfers_in_both_directions_do_not_deadlock(
    pipeline: ChatPipeline, users: Users, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """alice → streamer in the streamer's channel, streamer → alice in alice's."""
    await top_up(sessions, "u-alice", 200, "topup:a")
    await top_up(sessions, users.owner, 200, "topup:o")
    forth = [users.message("u-alice", "→", amount=5) for _ in range(20)]
    back = [users.message(users.owner, "←", amount=5, stream_id="ch-u-alice") for _ in range(20)]
    outcomes = await asyncio.gather(*(pipeline.decide(m) for m in forth + back))
    assert all(isinstance(o[0], ChatAccepted) for o in outcomes)
    wallets = await assert_books_balance(sessions, 400)
    assert (wallets["u-alice"], wallets[users.owner]) == (200, 200)
