"""Errors a handler raises to steer the ack policy.

Exception (anything unexpected)   → transient: nack with backoff, dead-letter at max
└── PermanentError                → poison: dead-letter now, never retried
    └── msgspec.ValidationError / DecodeError are treated the same way
"""

from __future__ import annotations


class PermanentError(Exception):
    """Retrying cannot help (bad payload, impossible state): dead-letter at once."""
