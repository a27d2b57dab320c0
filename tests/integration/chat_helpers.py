"""Shared helpers for the chat tests (not a test module)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chat.models import ChatUserRow
from events.catalog import ChatMessage, ChatUser
from events.envelope import new_event_id

# Owncast's sanitization test list plus the classics: all must stay inert text.
XSS_PAYLOADS: tuple[str, ...] = (
    "<img src=x onerror=alert(1)>",
    "<script>alert('xss')</script>",
    '<a href="javascript:alert(1)">click</a>',
    "<svg/onload=alert(1)>",
    '"><iframe src="https://evil.example"></iframe>',
    "![img](javascript:alert(1))",
    "<img src=/emoji/../../etc/passwd>",
    "&lt;b&gt;already escaped&lt;/b&gt; & ampersand",
    "<style>body{display:none}</style>",
    "{{constructor.constructor('alert(1)')()}}",
)


@dataclass
class FakeClock:
    now: int = 1_800_000_000_000  # ms

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


@dataclass
class Users:
    """A streamer (owns channel ``stream``), a moderator-to-be and viewers."""

    stream: str = "chan1"
    owner: str = "u-owner"
    names: dict[str, str] = field(
        default_factory=lambda: {
            "u-owner": "Streamer",
            "u-mod": "Moddy",
            "u-alice": "Alice",
            "u-bob": "Bob",
        }
    )

    def message(self, user_id: str, text: str, **extra: Any) -> ChatMessage:
        return ChatMessage(
            message_id=new_event_id(),
            stream_id=extra.pop("stream_id", self.stream),
            user=ChatUser(id=user_id, name=self.names.get(user_id, "")),
            text=text,
            gateway_id=extra.pop("gateway_id", "gw-test"),
            client_id=extra.pop("client_id", "client-1"),
            **extra,
        )


async def register_users(sessions: async_sessionmaker[AsyncSession], users: Users) -> None:
    async with sessions.begin() as session:
        for user_id, name in users.names.items():
            session.add(
                ChatUserRow(
                    user_id=user_id,
                    username=name,
                    username_key=name.casefold(),
                    # Each user owns a channel; the owner's is the one the tests use.
                    stream_id=users.stream if user_id == users.owner else f"ch-{user_id}",
                    registered_at=dt.datetime.now(dt.UTC),
                )
            )
