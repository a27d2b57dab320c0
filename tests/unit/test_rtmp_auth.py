"""Stream-key syntax, hashing, constant-time comparison, and the bad-key throttle."""

from __future__ import annotations

import hashlib
import secrets

import pytest

from ingest.auth import MAX_KEY_BYTES, FailureThrottle, hash_key, hashes_match, key_syntax_problem

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "empty stream key"),
        ("a" * (MAX_KEY_BYTES + 1), "stream key longer than 256 bytes"),
        ("é" * 129, "stream key longer than 256 bytes"),  # 258 bytes in UTF-8
        ("ab\x00cd", "NUL in the stream key"),
        ("%2e%2e", "percent-escape in the stream key"),
        ("..", "'..' in the stream key"),
        ("key/../../etc", "'..' in the stream key"),
        ("live/key", "stream key has characters outside A-Z a-z 0-9 - . _ ~"),
        ("key?token=1", "stream key has characters outside A-Z a-z 0-9 - . _ ~"),
        ("key with space", "stream key has characters outside A-Z a-z 0-9 - . _ ~"),
        ("ключ", "stream key has characters outside A-Z a-z 0-9 - . _ ~"),
    ],
)
def test_keys_refused_before_hashing(name: str, problem: str) -> None:
    assert key_syntax_problem(name) == problem


@pytest.mark.parametrize("name", [secrets.token_urlsafe(32), "a" * MAX_KEY_BYTES, "a.b~c-d_e"])
def test_keys_accepted(name: str) -> None:
    assert key_syntax_problem(name) is None


def test_hash_is_the_sha256_hex_the_gateway_publishes() -> None:
    key = secrets.token_urlsafe(32)
    assert hash_key(key) == hashlib.sha256(key.encode()).hexdigest()
    assert hashes_match(hash_key(key), hashlib.sha256(key.encode()).hexdigest())
    assert not hashes_match(hash_key(key), hash_key(key + "x"))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_repeated_bad_keys_lock_the_address_out() -> None:
    clock = Clock()
    throttle = FailureThrottle(limit=3, window_s=60, lockout_s=300, clock=clock)
    for _ in range(2):
        throttle.record_failure("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == 0.0
    throttle.record_failure("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == 300.0
    assert throttle.retry_after("10.0.0.2") == 0.0  # per address
    clock.now = 299.0
    assert throttle.retry_after("10.0.0.1") == 1.0
    clock.now = 300.0
    assert throttle.retry_after("10.0.0.1") == 0.0


def test_failures_outside_the_window_do_not_count() -> None:
    clock = Clock()
    throttle = FailureThrottle(limit=3, window_s=60, lockout_s=300, clock=clock)
    for step in range(10):
        clock.now = step * 31.0  # never three within 60 s
        throttle.record_failure("h")
    assert throttle.retry_after("h") == 0.0


def test_a_good_key_clears_the_count() -> None:
    throttle = FailureThrottle(limit=2, clock=Clock())
    throttle.record_failure("h")
    throttle.record_success("h")
    throttle.record_failure("h")
    assert throttle.retry_after("h") == 0.0


def test_memory_is_bounded() -> None:
    throttle = FailureThrottle(limit=5, max_hosts=100, clock=Clock())
    for i in range(10_000):
        throttle.record_failure(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}")
    assert len(throttle._failures) == 100
