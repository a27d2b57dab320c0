"""What a chat message's text may be, and what it carries (links, banned words, effects).

The text is stored and delivered exactly as sent: nothing here rewrites it, nothing
anywhere turns it into HTML (Owncast CVE-2021-39183 was stored XSS through chat).
Matching (banned words, links) works on a normalised copy so look-alike tricks
(fullwidth letters, zero-width joiners inside a word, case) do not slip through.

Refused outright (``invalid_text``): control characters (Unicode ``Cc``: NUL, escape
sequences, newlines — chat lines are single lines), lone surrogates (``Cs``: not
encodable as UTF-8), line/paragraph separators, bidirectional overrides and isolates
(they reorder what other viewers see: "Trojan Source", CVE-2021-42574), private-use
characters and noncharacters.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Final

# Bidi embedding/override/isolate controls (Unicode TR9); other Cf (ZWJ in emoji
# sequences, soft hyphen) are harmless and allowed.
_BIDI_CONTROLS: Final = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
# Not "Cn" (unassigned): emoji newer than this Python's Unicode tables are Cn here.
_REFUSED_CATEGORIES: Final = frozenset({"Cc", "Cs", "Co", "Zl", "Zp"})
# Invisible characters people put inside words to dodge filters.
_INVISIBLE: Final = re.compile("[\u00ad\u180e\u200b-\u200f\u2060-\u2064\ufeff]")

# A link: a scheme, "www.", or a bare domain with a common TLD (optionally a path).
_LINK: Final = re.compile(
    r"""(?ix)
    (?:\b(?:https?|ftp|wss?)://\S+)
  | (?:\bwww\.\S+)
  | (?:\b[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?
        (?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*
        \.(?:com|net|org|io|gg|tv|co|me|ly|xyz|app|dev|info|biz|ru|de|uk|fr|jp|cn|link
            |site|online|live|stream|to|be|us|ca|au|sh|so|cc|ws|tk|gl|gd|is|it|nl|eu)
        \b(?:[/?#]\S*)?)
    """
)

# Effect emoji → the key viewers get counts for. A heart comes with or without the
# emoji presentation selector (U+FE0F); both count as "❤️".
EFFECTS: Final[dict[str, str]] = {
    "🎉": "🎉",
    "❤": "❤️",
    "🔥": "🔥",
    "👏": "👏",
    "😂": "😂",
    "👍": "👍",
}
# One message adds at most this many of one emoji: 500 🔥 are still one person.
MAX_EFFECT_PER_MESSAGE: Final = 10


def check_text(text: str, max_chars: int) -> tuple[str, str] | None:
    """``(code, reason)`` when the text is refused, else None."""
    if len(text) > max_chars:
        return "too_long", f"{len(text)} characters, at most {max_chars}"
    for char in text:
        if char in _BIDI_CONTROLS:
            return "invalid_text", f"bidirectional control U+{ord(char):04X} is not allowed"
        if unicodedata.category(char) in _REFUSED_CATEGORIES or _noncharacter(char):
            return "invalid_text", f"control character U+{ord(char):04X} is not allowed"
    if not text.strip() or not _INVISIBLE.sub("", text).strip():
        return "empty", "the message is empty"
    return None


def _noncharacter(char: str) -> bool:
    code = ord(char)
    return 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE


def normalize(text: str) -> str:
    """For matching only: NFKC (fullwidth → ASCII), invisible characters removed,
    case-folded."""
    return _INVISIBLE.sub("", unicodedata.normalize("NFKC", text)).casefold()


def contains_link(text: str) -> bool:
    return _LINK.search(normalize(text)) is not None


def normalize_word(word: str) -> str:
    return normalize(word).strip()


def banned_word_in(text: str, words: frozenset[str]) -> str | None:
    """The first banned word the text contains (whole words; substrings for words
    that are not made of letters, like "💩" or "c0ck")."""
    if not words:
        return None
    normalized = normalize(text)
    tokens = set(re.findall(r"\w+", normalized))
    for word in sorted(words):
        if word.isalnum() and word.isalpha():
            if word in tokens:
                return word
        elif word in normalized:
            return word
    return None


def effects_in(text: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for char in text:
        key = EFFECTS.get(char)
        if key is not None and counts[key] < MAX_EFFECT_PER_MESSAGE:
            counts[key] += 1
    return counts
