"""The chat component's pure rules: text, links, banned words, effects, buckets, commands, tiers."""

from __future__ import annotations

import pytest

from chat import ratelimit
from chat.commands import CommandError, parse_command
from chat.text import banned_word_in, check_text, contains_link, effects_in, normalize_word
from chat.tiers import MAX_AMOUNT, superchat_info

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("x" * 501, "too_long"),
        ("", "empty"),
        ("   ", "empty"),
        ("\u200b\u200b", "empty"),
        ("line1\nline2", "invalid_text"),
        ("bell\x07", "invalid_text"),
        ("nul\x00", "invalid_text"),
        ("esc \x1b[31mred", "invalid_text"),
        ("rtl \u202eevil", "invalid_text"),
        ("isolate \u2066x", "invalid_text"),
        ("sep \u2028", "invalid_text"),
        ("lone \ud800", "invalid_text"),
        ("private \ue000", "invalid_text"),
        ("nonchar \ufffe", "invalid_text"),
    ],
)
def test_refused_text(text: str, code: str) -> None:
    problem = check_text(text, 500)
    assert problem is not None
    assert problem[0] == code


@pytest.mark.parametrize(
    "text",
    [
        "x" * 500,
        "hello 👋",
        "family 👨\u200d👩\u200d👧 and ❤️",
        "<script>alert(1)</script>",
        "שלום עולם",
        "newer emoji 🫨",
    ],
)
def test_accepted_text(text: str) -> None:
    assert check_text(text, 500) is None


@pytest.mark.parametrize(
    ("text", "link"),
    [
        ("see https://evil.example/x", True),
        ("go to www.spam.biz", True),
        ("visit spam.com now", True),
        ("fullwidth ｓｐａｍ．ｃｏｍ", True),
        ("ws://host:1/x", True),
        ("a.b is not a link", False),
        ("I am fine. Thanks", False),
        ("version 1.2.3", False),
    ],
)
def test_links(text: str, link: bool) -> None:
    assert contains_link(text) is link


def test_banned_words_whole_words_and_tricks() -> None:
    words = frozenset({normalize_word("Heck"), normalize_word("b@d")})
    assert banned_word_in("what the HECK", words) == "heck"
    assert banned_word_in("what the h\u200beck", words) == "heck"  # zero-width inside
    assert banned_word_in("what the ｈｅｃｋ", words) == "heck"  # fullwidth
    assert banned_word_in("checking in", words) is None  # not a whole word
    assert banned_word_in("so b@d", words) == "b@d"
    assert banned_word_in("anything", frozenset()) is None


def test_effects_counted_and_capped() -> None:
    assert effects_in("🎉🎉 ❤️ ❤ 🔥 👏🏽 ok") == {"🎉": 2, "❤️": 2, "🔥": 1, "👏": 1}
    assert effects_in("🔥" * 50) == {"🔥": 10}
    assert effects_in("<3 no emoji") == {}


def test_token_bucket() -> None:
    first = ratelimit.take(None, now_ms=0, burst=3, per_s=1.5)
    assert first.allowed
    bucket = first.bucket
    for _ in range(2):
        verdict = ratelimit.take(bucket, now_ms=0, burst=3, per_s=1.5)
        assert verdict.allowed
        bucket = verdict.bucket
    refused = ratelimit.take(bucket, now_ms=100, burst=3, per_s=1.5)
    assert not refused.allowed
    assert refused.retry_after_s == pytest.approx((1 - 0.15) / 1.5)
    assert ratelimit.take(bucket, now_ms=700, burst=3, per_s=1.5).allowed
    assert ratelimit.describe(3, 1.5) == "3 messages per 2 s"


@pytest.mark.parametrize(
    ("text", "action", "target", "seconds", "value"),
    [
        ("/ban @Alice", "ban", "alice", 0, ""),
        ("/unban bob", "unban", "bob", 0, ""),
        ("/timeout bob 60", "timeout", "bob", 60, ""),
        ("/slow 10", "slow", "", 10, ""),
        ("/slow off", "slow", "", 0, ""),
        ("/clear", "clear", "", 0, ""),
        ("/mod carol", "mod", "carol", 0, ""),
        ("/unmod carol", "unmod", "carol", 0, ""),
        ("/ratelimit 5 10", "ratelimit", "", 10, "5/10"),
        ("/ratelimit off", "ratelimit", "", 0, ""),
        ("/banword Heck", "banword", "", 0, "heck"),
        ("/links none", "links", "", 0, "none"),
    ],
)
def test_commands(text: str, action: str, target: str, seconds: int, value: str) -> None:
    command = parse_command(text)
    assert (command.action, command.target, command.seconds, command.value) == (
        action,
        target,
        seconds,
        value,
    )


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("/fly", "unknown_command"),
        ("/", "unknown_command"),
        ("/ban", "bad_command"),
        ("/timeout bob soon", "bad_command"),
        ("/timeout bob 0", "bad_command"),
        ("/slow 99999", "bad_command"),
        ("/links maybe", "bad_command"),
    ],
)
def test_bad_commands(text: str, code: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(text)
    assert caught.value.code == code


def test_tiers() -> None:
    assert (superchat_info(1).tier, superchat_info(1).pin_seconds) == (1, 0)
    assert superchat_info(100).tier == 2
    assert superchat_info(999).tier == 3
    assert superchat_info(5000).color == "#D00000"
    with pytest.raises(ValueError, match="outside"):
        superchat_info(MAX_AMOUNT + 1)
