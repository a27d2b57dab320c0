"""Process counts of ``videopick up``: one ingest per core by default (issue #4)."""

from __future__ import annotations

import os

import pytest

from common.supervisor import parse_process_counts


def test_ingest_defaults_to_one_process_per_core() -> None:
    assert parse_process_counts("") == {"ingest": os.cpu_count() or 1}


def test_an_explicit_count_wins_over_the_default() -> None:
    assert parse_process_counts("ingest=1,gateway=2") == {"ingest": 1, "gateway": 2}


def test_a_bad_count_is_refused() -> None:
    with pytest.raises(ValueError, match="expected NAME=N"):
        parse_process_counts("ingest=two")
