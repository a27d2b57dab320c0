"""Errors of the packager.

    PackagerError          base class
    └── ConfigError        an AVC or AAC configuration record we cannot use

Timestamp trouble and store failures are not errors: the packager logs them and goes
on (the session keeps running, RELIABILITY.md "Disk or store full").
"""

from __future__ import annotations


class PackagerError(Exception):
    """Base of every packager error."""


class ConfigError(PackagerError, ValueError):
    """A decoder configuration record is truncated or describes something we cannot mux."""
