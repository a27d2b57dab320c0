"""What a deleted video's cleanup removes: the keys, and the layouts it mirrors."""

from __future__ import annotations

from events.catalog import VideoDeleted
from ingest.packager import keys as ingest_keys
from transcoder.deletion import (
    MediaSet,
    media_of_deleted,
    media_of_request,
    recording_key,
    session_prefix,
    upload_prefix,
)
from uploader import layout as uploader_layout


def test_the_mirrored_layouts_agree_with_their_owners() -> None:
    assert upload_prefix("up-1") == uploader_layout.upload_prefix("up-1")
    assert uploader_layout.source_key("up-1").startswith(upload_prefix("up-1"))
    assert session_prefix("st", "se") == ingest_keys.session_prefix("st", "se")
    assert recording_key("st", "se") == ingest_keys.recording_key("st", "se")
    assert ingest_keys.recording_playlist_key("st", "se").startswith(session_prefix("st", "se"))


def test_an_upload_and_a_recording() -> None:
    upload = VideoDeleted(video_id="v1", user_id="u1", upload_id="up-1")
    assert media_of_deleted(upload) == MediaSet(("vod/v1/", "uploads/up-1/"))
    recording = VideoDeleted(video_id="v2", user_id="u1", stream_id="st", session_id="se")
    assert media_of_deleted(recording) == MediaSet(
        ("vod/v2/", "live/st/se/"), ("recordings/st/se.mp4",)
    )


def test_odd_ids_never_widen_a_prefix() -> None:
    # An empty or hostile id must not turn live/{id}/ into live/ or escape it.
    for stream_id, session_id in (("", "se"), ("st", ""), ("..", "se"), ("st", "a/b")):
        event = VideoDeleted(
            video_id="v3", user_id="u1", stream_id=stream_id, session_id=session_id
        )
        assert media_of_deleted(event) == MediaSet(("vod/v3/",))
    for upload_id in ("", "../x", "a b"):
        event = VideoDeleted(video_id="v3", user_id="u1", upload_id=upload_id)
        assert media_of_deleted(event) == MediaSet(("vod/v3/",))


def test_a_late_request_brings_its_source() -> None:
    assert media_of_request("v4", "uploads/up-4/source") == MediaSet(
        ("vod/v4/",), ("uploads/up-4/source",)
    )
    assert media_of_request(
        "v5", "recordings/st/se.mp4", stream_id="st", session_id="se"
    ) == MediaSet(("vod/v5/", "live/st/se/"), ("recordings/st/se.mp4",))


def test_the_jobs_source_goes_too() -> None:
    unknown = VideoDeleted(video_id="v6", user_id="u1")  # the catalog knew no upload
    assert media_of_deleted(unknown, "uploads/up-6/source") == MediaSet(
        ("vod/v6/",), ("uploads/up-6/source",)
    )
    recording = VideoDeleted(video_id="v7", user_id="u1", stream_id="st", session_id="se")
    assert media_of_deleted(recording, "recordings/st/se.mp4") == MediaSet(
        ("vod/v7/", "live/st/se/"), ("recordings/st/se.mp4",)
    )
