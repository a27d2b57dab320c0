"""Super chat tiers: the amount decides the colour and how long the message is pinned.

Modelled on YouTube's Super Chat ladder (blue → red, longer pins for more).
"""

from __future__ import annotations

from typing import Final

from events.catalog import SuperChatInfo

MIN_AMOUNT: Final = 1
MAX_AMOUNT: Final = 1_000_000  # credits; a typo guard, not a business limit

# (from amount, tier, colour, pin seconds), ascending.
TIERS: Final[tuple[tuple[int, int, str, int], ...]] = (
    (1, 1, "#1E88E5", 0),
    (100, 2, "#00BFA5", 60),
    (500, 3, "#FFB300", 120),
    (1_000, 4, "#F57C00", 300),
    (5_000, 5, "#D00000", 600),
)


def superchat_info(amount: int) -> SuperChatInfo:
    if not MIN_AMOUNT <= amount <= MAX_AMOUNT:
        raise ValueError(f"amount {amount} outside {MIN_AMOUNT}..{MAX_AMOUNT}")
    chosen = TIERS[0]
    for tier in TIERS:
        if amount >= tier[0]:
            chosen = tier
    _, number, color, pin_seconds = chosen
    return SuperChatInfo(amount=amount, tier=number, color=color, pin_seconds=pin_seconds)
