"""The packager writes and the gateway reads the same object layout."""

from __future__ import annotations

import pytest

from gateway.live import keys as gateway_keys
from ingest.packager import keys as packager_keys

pytestmark = pytest.mark.unit


def test_layouts_agree() -> None:
    stream, session = "chan_1", "0198-abc"
    pairs = [
        (packager_keys.init_key(stream, session), gateway_keys.init_uri(session)),
        (packager_keys.segment_key(stream, session, 42), gateway_keys.segment_uri(session, 42)),
        (packager_keys.part_key(stream, session, 42, 3), gateway_keys.part_uri(session, 42, 3)),
    ]
    for key, uri in pairs:
        assert gateway_keys.uri_of(stream, key) == uri
        session_id, name = uri.split("/")
        assert gateway_keys.object_key(stream, session_id, name) == key


@pytest.mark.parametrize(
    ("stream", "session", "name"),
    [
        ("..", "s", "init.mp4"),
        ("c", "s", "../init.mp4"),
        ("c", "s", "seg1.m4s.tmp"),
        ("c", ".hidden", "seg1.m4s"),
        ("c", "s", "part1.m4s"),
        ("c", "s", "index.m3u8"),
        ("c", "s%2e%2e", "init.mp4"),
        ("c" * 200, "s", "init.mp4"),
    ],
)
def test_only_media_names_map_to_keys(stream: str, session: str, name: str) -> None:
    assert gateway_keys.object_key(stream, session, name) is None


def test_unsafe_ids_are_refused_by_the_packager() -> None:
    with pytest.raises(ValueError, match="not a safe id"):
        packager_keys.init_key("../x", "s")


def test_every_token_urlsafe_id_is_a_valid_stream_id() -> None:
    # The gateway mints stream ids with secrets.token_urlsafe: ~1 in 32 starts with - or _.
    for stream_id in ("-aUZ5qx4XsqmkGve", "_leading", "plain0"):
        assert packager_keys.check_id("stream", stream_id) == stream_id
        assert gateway_keys.ID.fullmatch(stream_id)
    for bad in ("", "a.b", "../x", "a/b", "x" * 129):
        assert not gateway_keys.ID.fullmatch(bad)
        with pytest.raises(ValueError, match="not a safe id"):
            packager_keys.check_id("stream", bad)
