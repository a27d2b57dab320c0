"""Password hashing: Argon2id with OWASP's minimum (19 MiB, t=2, p=1), off the event loop.

Argon2 is slow and memory-hard on purpose, so each hash runs in a worker thread
(argon2-cffi releases the GIL) and at most ``MAX_CONCURRENT`` run at once per process:
a burst of logins queues instead of taking every core and ``n * 19 MiB`` of memory.
"""

from __future__ import annotations

import asyncio
from functools import cache
from typing import Final

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# OWASP Password Storage Cheat Sheet, Argon2id: m=19456 KiB, t=2, p=1.
HASHER: Final = PasswordHasher(
    time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, salt_len=16, type=Type.ID
)
MAX_CONCURRENT: Final = 4

_gates: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}


def _gate() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    gate = _gates.get(loop)
    if gate is None:
        _gates.clear()  # one loop per process in production; tests make new ones
        gate = _gates[loop] = asyncio.Semaphore(MAX_CONCURRENT)
    return gate


async def hash_password(password: str) -> str:
    async with _gate():
        return await asyncio.to_thread(HASHER.hash, password)


def _verify(stored_hash: str, password: str) -> bool:
    try:
        return HASHER.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password(stored_hash: str, password: str) -> bool:
    async with _gate():
        return await asyncio.to_thread(_verify, stored_hash, password)


@cache
def _dummy_hash() -> str:
    return HASHER.hash("videopick-timing-equalizer")


async def burn_verify(password: str) -> None:
    """Verified against when the login names no account, so "no such user" takes as
    long as "wrong password" and response times do not reveal which accounts exist."""
    await verify_password(await asyncio.to_thread(_dummy_hash), password)


def needs_rehash(stored_hash: str) -> bool:
    """True when the stored hash used weaker parameters than today's (rehash at login)."""
    try:
        return HASHER.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True
