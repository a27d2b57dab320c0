"""Token bucket per user and channel (pure arithmetic; the state lives in the database).

A user starts with ``burst`` tokens; each message takes one; tokens come back at
``per_s`` a second up to ``burst``. Owncast hard-codes "3 messages per 2 s"; here it is
the default (burst 3, 1.5/s) and each channel may set its own (``/ratelimit 5 10``: five
messages per ten seconds). A refused message takes no token.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bucket:
    tokens: float
    at_ms: int


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    bucket: Bucket  # the state to store if the message is accepted
    retry_after_s: float = 0.0


def take(bucket: Bucket | None, *, now_ms: int, burst: int, per_s: float) -> Verdict:
    burst = max(1, burst)
    if bucket is None:
        tokens = float(burst)
    else:
        elapsed_s = max(0, now_ms - bucket.at_ms) / 1000
        tokens = min(float(burst), bucket.tokens + elapsed_s * per_s)
    if tokens >= 1.0:
        return Verdict(True, Bucket(tokens - 1.0, now_ms))
    wait = (1.0 - tokens) / per_s if per_s > 0 else float("inf")
    return Verdict(False, Bucket(tokens, now_ms), retry_after_s=wait)


def describe(burst: int, per_s: float) -> str:
    """ "3 messages per 2 s" for the reason a sender sees."""
    if per_s <= 0:
        return f"{burst} messages"
    window = burst / per_s
    shown = f"{window:.0f}" if abs(window - round(window)) < 0.05 else f"{window:.1f}"
    return f"{burst} messages per {shown} s"
