"""Moderation commands: a chat message starting with ``/`` from the streamer or a mod.

::

    /ban USER              /unban USER            /timeout USER SECONDS
    /slow SECONDS|off      /clear                 /mod USER      /unmod USER
    /ratelimit N SECONDS|off                      /banword WORD  /unbanword WORD
    /links all|mods|none

``USER`` is a username, with or without ``@``. Parsing is pure; rights and effects are
decided against the database (``chat.pipeline``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from chat.text import normalize_word

MAX_TIMEOUT_S: Final = 14 * 24 * 3600
MAX_SLOW_S: Final = 3600
MAX_WORD_CHARS: Final = 50
LINK_POLICIES: Final = ("all", "mods", "none")

# Actions that name a user; only the streamer may grant or take moderator rights.
TARGETED: Final = frozenset({"ban", "unban", "timeout", "mod", "unmod"})
OWNER_ONLY: Final = frozenset({"mod", "unmod"})


class CommandError(ValueError):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Command:
    action: str
    target: str = ""  # a username (case-folded), for TARGETED actions
    seconds: int = 0
    value: str = ""


def _int(text: str, what: str, low: int, high: int) -> int:
    if not text.isdigit():
        raise CommandError("bad_command", f"{what} must be a whole number")
    value = int(text)
    if not low <= value <= high:
        raise CommandError("bad_command", f"{what} must be between {low} and {high}")
    return value


def _user(text: str) -> str:
    name = text.removeprefix("@").strip()
    if not name:
        raise CommandError("bad_command", "name a user")
    return name.casefold()


def parse_command(text: str) -> Command:  # noqa: PLR0911 - one branch per command
    parts = text.strip().split()
    name = parts[0][1:].lower() if parts else ""
    args = parts[1:]

    def need(count: int, usage: str) -> None:
        if len(args) != count:
            raise CommandError("bad_command", f"usage: {usage}")

    if name in ("ban", "unban", "mod", "unmod"):
        need(1, f"/{name} USER")
        return Command(name, target=_user(args[0]))
    if name == "timeout":
        need(2, "/timeout USER SECONDS")
        return Command(
            "timeout", target=_user(args[0]), seconds=_int(args[1], "SECONDS", 1, MAX_TIMEOUT_S)
        )
    if name == "slow":
        need(1, "/slow SECONDS|off")
        seconds = 0 if args[0].lower() == "off" else _int(args[0], "SECONDS", 0, MAX_SLOW_S)
        return Command("slow", seconds=seconds)
    if name == "clear":
        need(0, "/clear")
        return Command("clear")
    if name == "ratelimit":
        if len(args) == 1 and args[0].lower() == "off":
            return Command("ratelimit", value="")  # back to the default
        need(2, "/ratelimit MESSAGES SECONDS|off")
        count = _int(args[0], "MESSAGES", 1, 100)
        seconds = _int(args[1], "SECONDS", 1, 3600)
        return Command("ratelimit", seconds=seconds, value=f"{count}/{seconds}")
    if name in ("banword", "unbanword"):
        if not args:
            raise CommandError("bad_command", f"usage: /{name} WORD")
        word = normalize_word(" ".join(args))
        if not word or len(word) > MAX_WORD_CHARS:
            raise CommandError("bad_command", f"a word of 1 to {MAX_WORD_CHARS} characters")
        return Command(name, value=word)
    if name == "links":
        need(1, "/links all|mods|none")
        policy = args[0].lower()
        if policy not in LINK_POLICIES:
            raise CommandError("bad_command", "usage: /links all|mods|none")
        return Command("links", value=policy)
    raise CommandError("unknown_command", f"unknown command /{name}" if name else "empty command")
