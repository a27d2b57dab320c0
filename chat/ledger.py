"""The wallet ledger: double entry, never below zero, each transaction exactly once.

Accounts are ``user:<id>`` (a wallet) and ``external:topups`` (where top-ups come
from: it goes negative by design, the money that entered the system). A transaction
has an id that names its cause (``topup:<event_id>``, ``superchat:<message_id>``) and
is its primary key: applying it twice is impossible, concurrently or not. Its entries
sum to zero; a wallet's balance (``chat_wallets.balance``) always equals the sum of its
entries, updated in the same database transaction.

A debit is one conditional statement, ``UPDATE … SET balance = balance - :amount WHERE
balance >= :amount``: the check and the write cannot be separated by a concurrent
debit (PostgreSQL re-evaluates the condition on the locked row; SQLite has one
writer). A ``CHECK (balance >= 0)`` backs it up. Wallet rows are locked in user-id
order so two transfers in opposite directions cannot deadlock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from chat.models import LedgerEntryRow, LedgerTransactionRow, WalletRow
from chat.sql import insert_ignore
from events.chat_queries import LedgerEntryView, WalletView

TOPUP_ACCOUNT: Final = "external:topups"
MAX_TOPUP: Final = 1_000_000


def user_account(user_id: str) -> str:
    return f"user:{user_id}"


@dataclass(frozen=True)
class Transfer:
    tx_id: str
    from_user_id: str
    to_user_id: str
    amount: int
    stream_id: str = ""
    message_id: str = ""
    text: str = ""


async def _ensure_wallets(session: AsyncSession, user_ids: list[str], now_ms: int) -> None:
    """Create missing wallets, then lock them, both in user-id order (no deadlock)."""
    ordered = sorted(set(user_ids))
    for user_id in ordered:
        await insert_ignore(
            session,
            WalletRow,
            {"user_id": user_id, "balance": 0, "updated_at_ms": now_ms},
            ["user_id"],
        )
    await session.execute(
        select(WalletRow.user_id)
        .where(WalletRow.user_id.in_(ordered))
        .order_by(WalletRow.user_id)
        .with_for_update()
    )


async def _entries(session: AsyncSession, tx_id: str, now_ms: int, *legs: tuple[str, int]) -> None:
    assert sum(amount for _, amount in legs) == 0, "a transaction's entries sum to zero"
    for account, amount in legs:
        user_id = account.removeprefix("user:") if account.startswith("user:") else None
        session.add(
            LedgerEntryRow(
                tx_id=tx_id, account=account, user_id=user_id, amount=amount, created_at_ms=now_ms
            )
        )


async def _add(session: AsyncSession, user_id: str, amount: int, now_ms: int) -> bool:
    """Change a wallet's balance; a debit only if it stays >= 0. True if applied."""
    stmt = (
        update(WalletRow)
        .where(WalletRow.user_id == user_id)
        .values(balance=WalletRow.balance + amount, updated_at_ms=now_ms)
    )
    if amount < 0:
        stmt = stmt.where(WalletRow.balance >= -amount)
    result = cast(CursorResult[Any], await session.execute(stmt))
    return result.rowcount == 1


async def _begin(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Record the transaction; False if it exists (already applied)."""
    return await insert_ignore(session, LedgerTransactionRow, values, ["tx_id"])


async def topup(
    session: AsyncSession, *, tx_id: str, user_id: str, amount: int, now_ms: int, note: str = ""
) -> bool:
    """Credit ``amount`` from outside. False if this transaction was applied before."""
    if not 0 < amount <= MAX_TOPUP:
        raise ValueError(f"top-up amount {amount} outside 1..{MAX_TOPUP}")
    if not await _begin(
        session,
        {
            "tx_id": tx_id,
            "kind": "topup",
            "amount": amount,
            "to_user_id": user_id,
            "text": note,
            "created_at_ms": now_ms,
        },
    ):
        return False
    await _ensure_wallets(session, [user_id], now_ms)
    await _add(session, user_id, amount, now_ms)
    await _entries(
        session, tx_id, now_ms, (TOPUP_ACCOUNT, -amount), (user_account(user_id), amount)
    )
    return True


async def transfer(session: AsyncSession, move: Transfer, now_ms: int) -> bool:
    """Move credits between wallets (a super chat). False: not enough credits.

    The caller's transaction holds everything: on False nothing of the transfer is
    written (the wallet rows it may have created hold 0 and are harmless).
    """
    if move.amount <= 0 or move.from_user_id == move.to_user_id:
        raise ValueError("a transfer moves a positive amount between two wallets")
    await _ensure_wallets(session, [move.from_user_id, move.to_user_id], now_ms)
    if not await _add(session, move.from_user_id, -move.amount, now_ms):
        return False
    if not await _begin(
        session,
        {
            "tx_id": move.tx_id,
            "kind": "superchat",
            "amount": move.amount,
            "from_user_id": move.from_user_id,
            "to_user_id": move.to_user_id,
            "stream_id": move.stream_id,
            "message_id": move.message_id,
            "text": move.text,
            "created_at_ms": now_ms,
        },
    ):
        # Applied before under another delivery: undo this debit (same transaction).
        await _add(session, move.from_user_id, move.amount, now_ms)
        return True
    await _add(session, move.to_user_id, move.amount, now_ms)
    await _entries(
        session,
        move.tx_id,
        now_ms,
        (user_account(move.from_user_id), -move.amount),
        (user_account(move.to_user_id), move.amount),
    )
    return True


async def balance(session: AsyncSession, user_id: str) -> int:
    value = await session.scalar(select(WalletRow.balance).where(WalletRow.user_id == user_id))
    return int(value or 0)


def _kind(tx: LedgerTransactionRow, user_id: str) -> str:
    if tx.kind == "superchat":
        return "superchat_received" if tx.to_user_id == user_id else "superchat_sent"
    return tx.kind


def _view(entry: LedgerEntryRow, tx: LedgerTransactionRow, user_id: str) -> LedgerEntryView:
    counterparty = tx.from_user_id if tx.to_user_id == user_id else tx.to_user_id
    return LedgerEntryView(
        tx_id=tx.tx_id,
        kind=_kind(tx, user_id),
        amount=entry.amount,
        created_at_ms=entry.created_at_ms,
        counterparty_user_id=counterparty,
        stream_id=tx.stream_id,
        message_id=tx.message_id,
        text=tx.text,
    )


async def wallet_view(
    session: AsyncSession, user_id: str, *, limit: int = 20, tx_id: str = ""
) -> WalletView:
    """Balance, latest entries, and earnings (super chats received)."""
    limit = max(1, min(limit, 200))
    rows = (
        await session.execute(
            select(LedgerEntryRow, LedgerTransactionRow)
            .join(LedgerTransactionRow, LedgerTransactionRow.tx_id == LedgerEntryRow.tx_id)
            .where(LedgerEntryRow.user_id == user_id)
            .order_by(LedgerEntryRow.id.desc())
            .limit(limit)
        )
    ).all()
    earned = (
        await session.execute(
            select(func.coalesce(func.sum(LedgerTransactionRow.amount), 0), func.count())
            .select_from(LedgerTransactionRow)
            .where(
                LedgerTransactionRow.kind == "superchat",
                LedgerTransactionRow.to_user_id == user_id,
            )
        )
    ).one()
    received = (
        await session.execute(
            select(LedgerEntryRow, LedgerTransactionRow)
            .join(LedgerTransactionRow, LedgerTransactionRow.tx_id == LedgerEntryRow.tx_id)
            .where(
                LedgerEntryRow.user_id == user_id,
                LedgerTransactionRow.kind == "superchat",
                LedgerTransactionRow.to_user_id == user_id,
            )
            .order_by(LedgerEntryRow.id.desc())
            .limit(limit)
        )
    ).all()
    applied = False
    if tx_id:
        applied = (
            await session.scalar(
                select(LedgerTransactionRow.tx_id).where(LedgerTransactionRow.tx_id == tx_id)
            )
        ) is not None
    return WalletView(
        user_id=user_id,
        balance=await balance(session, user_id),
        entries=[_view(entry, tx, user_id) for entry, tx in rows],
        earnings_total=int(earned[0]),
        earnings_count=int(earned[1]),
        earnings=[_view(entry, tx, user_id) for entry, tx in received],
        tx_applied=applied,
    )
