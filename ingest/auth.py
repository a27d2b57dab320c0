"""Stream-key checks: the syntax gate, the hash, the constant-time compare, the throttle.

A stream key is ``secrets.token_urlsafe(32)`` (gateway/channels/keys.py): 43 URL-safe
characters. What the publisher presents as its publishing name goes through, in order:

1. :func:`key_syntax_problem` — refused before hashing when it is longer than
   :data:`MAX_KEY_BYTES`, holds ``..``, a ``%`` escape (``%2e%2e``), NUL or anything
   outside RFC 3986's unreserved characters (RELIABILITY.md, "RTMP ingest");
2. :func:`hash_key` — SHA-256 hex, what ``channel.key_rotated`` carries (a fast hash is
   right: the key is 256 random bits, not a guessable password);
3. :func:`hashes_match` — ``hmac.compare_digest`` over the whole digest.

The key store finds the candidate row by that digest through an index, then confirms
it with :func:`hashes_match`. Lookup timing can at most say something about stored
*digests*, which do not reveal keys (SHA-256 preimage resistance).

Nothing here logs or returns the key itself.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Final

__all__ = [
    "MAX_KEY_BYTES",
    "FailureThrottle",
    "hash_key",
    "hashes_match",
    "key_syntax_problem",
]

MAX_KEY_BYTES: Final = 256
_UNRESERVED: Final = re.compile(r"[A-Za-z0-9._~-]+")  # RFC 3986 2.3


def key_syntax_problem(name: str) -> str | None:
    """Why ``name`` cannot be a stream key, or None. The reason never quotes the key."""
    size = len(name.encode("utf-8", "surrogatepass"))
    checks = (
        (size == 0, "empty stream key"),
        (size > MAX_KEY_BYTES, f"stream key longer than {MAX_KEY_BYTES} bytes"),
        ("\x00" in name, "NUL in the stream key"),
        ("%" in name, "percent-escape in the stream key"),
        (".." in name, "'..' in the stream key"),
        (not _UNRESERVED.fullmatch(name), "stream key has characters outside A-Z a-z 0-9 - . _ ~"),
    )
    return next((reason for failed, reason in checks if failed), None)


def hash_key(key: str) -> str:
    """SHA-256 hex of the key, as ``channel.key_rotated`` carries it."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def hashes_match(presented: str, stored: str) -> bool:
    """Constant time over the whole digest."""
    return hmac.compare_digest(presented.encode("ascii"), stored.encode("ascii"))


class FailureThrottle:
    """Bad keys per client address: ``limit`` within ``window_s`` locks it ``lockout_s``.

    In memory, per ingest process; at most ``max_hosts`` addresses are remembered
    (the least recently failing go first), so a spray of addresses costs bounded memory.
    """

    def __init__(
        self,
        *,
        limit: int = 5,
        window_s: float = 60.0,
        lockout_s: float = 300.0,
        max_hosts: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.max_hosts = max_hosts
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._locked_until: dict[str, float] = {}

    def retry_after(self, host: str) -> float:
        """Seconds until ``host`` may try again; 0 when it may now."""
        until = self._locked_until.get(host)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._locked_until[host]
            return 0.0
        return left

    def record_failure(self, host: str) -> None:
        now = self._clock()
        failures = self._failures.pop(host, None) or deque()
        failures.append(now)
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        self._failures[host] = failures  # most recent last
        if len(failures) >= self.limit:
            self._locked_until[host] = now + self.lockout_s
            failures.clear()
        while len(self._failures) > self.max_hosts:
            self._failures.popitem(last=False)
        if len(self._locked_until) > self.max_hosts:
            for expired in [h for h, until in self._locked_until.items() if until <= now]:
                del self._locked_until[expired]

    def record_success(self, host: str) -> None:
        self._failures.pop(host, None)
