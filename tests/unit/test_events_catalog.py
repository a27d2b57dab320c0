"""The event catalog without a server: encoding, subjects, streams, operator helpers.

``sample_event`` builds a valid instance of any catalog event (every field filled,
nested Structs included); the integration tests reuse it.
"""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest
from faststream.nats import NatsMessage

from common.settings import load_settings
from events.asyncapi import build_asyncapi, build_component_brokers
from events.broker import create_broker
from events.catalog import (
    EVENT_TYPES,
    EVENTS_BY_TYPE,
    ChatAccepted,
    ChunkUploaded,
    StreamStarted,
    UploadCompleted,
    decode_event,
    encode_event,
)
from events.deadletters import DeadLetter
from events.declare import declare_publishes, publisher_title
from events.envelope import Event
from events.replay import StoredRecord, map_subject, parse_time, replay_headers
from events.streams import DEAD_LETTERS, stream_for_subject

pytestmark = pytest.mark.unit

E = TypeVar("E", bound=Event)
OCCURRED = datetime(2026, 5, 20, 14, 0, 0, 123456, tzinfo=UTC)


def _value(info: msgspec.inspect.Type, name: str, variant: int) -> Any:
    """A valid value of one field's type; unknown types fail loudly (extend here)."""
    match info:
        case msgspec.inspect.StrType():
            return f"{name}-{variant}"  # also a valid subject token
        case msgspec.inspect.BoolType():
            return True
        case msgspec.inspect.IntType():
            return 7 + variant
        case msgspec.inspect.FloatType():
            return 2.5 + variant
        case msgspec.inspect.DateTimeType():
            return OCCURRED + timedelta(seconds=variant)
        case msgspec.inspect.ListType(item_type=item):
            return [_value(item, name, variant), _value(item, name, variant + 1)]
        case msgspec.inspect.DictType(key_type=msgspec.inspect.StrType(), value_type=value):
            return {"🔥": _value(value, name, variant), "👏": _value(value, name, variant + 1)}
        case msgspec.inspect.StructType(cls=cls):
            return _struct(cls, variant)
        case msgspec.inspect.UnionType(types=types):
            concrete = [t for t in types if not isinstance(t, msgspec.inspect.NoneType)]
            return _value(concrete[0], name, variant)
        case _:
            raise NotImplementedError(f"sample_event: no sample for {name}: {info!r}")


def _struct(cls: type[msgspec.Struct], variant: int) -> Any:
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    values = {f.name: _value(f.type, f.name, variant) for f in info.fields}
    return cls(**values)


def sample_event(cls: type[E], variant: int = 0, **overrides: Any) -> E:
    """A valid ``cls`` with every field set (defaults too, so they round-trip as well)."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    envelope = {"event_id", "occurred_at", "producer", "version", "correlation_id"}
    values = {
        f.name: _value(f.type, f.name, variant) for f in info.fields if f.name not in envelope
    }
    values |= {
        "occurred_at": OCCURRED + timedelta(seconds=variant),
        "producer": "tests",
        "correlation_id": f"corr-{variant}",
    }
    return cls(**(values | overrides))


# The stream each domain's events belong to, written out independently of streams.py.
EXPECTED_STREAM = {
    "user": "ACCOUNTS",
    "channel": "ACCOUNTS",
    "stream.part": "LIVE_MEDIA",
    "stream.segment": "LIVE_MEDIA",
    "stream.thumbnail": "LIVE_MEDIA",
    "stream": "STREAMS",
    "upload": "UPLOADS",
    "chunk": "UPLOADS",
    "transcode": "MEDIA",
    "video": "MEDIA",
    "chat": "CHAT",
    "stats": "STATS",
}


def _expected_stream(event_type: str) -> str:
    domain = event_type.split(".", maxsplit=1)[0]
    return EXPECTED_STREAM.get(event_type, EXPECTED_STREAM[domain])


def _ids(cls: type[Event]) -> str:
    return cls.event_type()


# --- the catalog ---------------------------------------------------------------------


def test_catalog_has_every_design_event() -> None:
    design = [
        "user.registered", "channel.key_rotated", "stream.started", "stream.part",
        "stream.segment", "stream.stop_requested", "stream.ended", "stream.recorded",
        "upload.created", "chunk.uploaded", "upload.completed", "upload.rejected",
        "upload.expired", "transcode.requested", "transcode.progress", "transcode.completed",
        "transcode.failed", "video.published", "chat.message", "chat.accepted",
        "chat.rejected", "chat.effect", "chat.superchat", "chat.moderation", "stats.viewers",
    ]  # fmt: skip
    assert set(design) <= set(EVENTS_BY_TYPE)
    assert len(EVENTS_BY_TYPE) == len(EVENT_TYPES)  # tags are unique


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=_ids)
def test_encode_decode_round_trip(cls: type[Event]) -> None:
    event = sample_event(cls)
    decoded = decode_event(encode_event(event))
    assert type(decoded) is cls
    assert decoded == event


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=_ids)
def test_subject_lands_in_its_stream(cls: type[Event]) -> None:
    event = sample_event(cls)
    key_field = cls.key_field
    assert key_field in cls.__struct_fields__, f"{cls.__name__}.key_field names no field"
    assert event.subject() == f"{cls.event_type()}.{getattr(event, key_field)}"
    stream = stream_for_subject(event.subject())
    assert stream.name == _expected_stream(cls.event_type())
    assert stream is not DEAD_LETTERS


def test_subject_refuses_a_key_that_is_not_one_token() -> None:
    with pytest.raises(ValueError, match="not a subject token"):
        sample_event(StreamStarted, stream_id="a.b").subject()


@pytest.mark.parametrize(
    "payload",
    [b"not json", b'{"type": "no.such.event"}', b'{"type": "stream.started"}', b"[]"],
)
def test_decode_refuses_bad_payloads(payload: bytes) -> None:
    with pytest.raises((msgspec.DecodeError, msgspec.ValidationError)):
        decode_event(payload)


# --- operator helpers ----------------------------------------------------------------

NOW = datetime(2026, 5, 20, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10m", NOW - timedelta(minutes=10)),
        ("2h", NOW - timedelta(hours=2)),
        ("1.5d", NOW - timedelta(hours=36)),
        ("1w", NOW - timedelta(days=7)),
        ("30s", NOW - timedelta(seconds=30)),
        ("2026-05-20T10:00:00Z", datetime(2026, 5, 20, 10, tzinfo=UTC)),
        ("2026-05-20T12:00:00+02:00", datetime(2026, 5, 20, 10, tzinfo=UTC)),
        ("2026-05-20T10:00:00", datetime(2026, 5, 20, 10, tzinfo=UTC)),  # naive = UTC
        ("2026-05-20", datetime(2026, 5, 20, tzinfo=UTC)),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    assert parse_time(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "10 minutes", "-5m", ""])
def test_parse_time_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(ValueError, match="cannot read time"):
        parse_time(text, now=NOW)


def test_map_subject_template_or_prefix() -> None:
    assert map_subject("replay.{subject}", "chat.message.r1") == "replay.chat.message.r1"
    assert map_subject("{subject}", "chat.message.r1") == "chat.message.r1"
    assert map_subject("replay", "chat.message.r1") == "replay.chat.message.r1"
    assert map_subject("replay.", "chat.message.r1") == "replay.chat.message.r1"


def _record(headers: dict[str, str], seq: int = 42) -> StoredRecord:
    return StoredRecord(
        seq=seq, subject="chat.message.r1", headers=headers, data=b"{}", time=NOW, stream="CHAT"
    )


def test_replay_headers_keep_the_event_and_change_the_id() -> None:
    headers = replay_headers(
        _record({"Nats-Msg-Id": "evt-1", "Nats-Expected-Stream": "CHAT", "correlation_id": "c"}),
        "r9",
    )
    assert headers == {
        "Nats-Msg-Id": "evt-1:replay:r9",
        "correlation_id": "c",
        "VP-Replay-Of": "CHAT:42",
        "VP-Replay-Id": "r9",
    }
    # Without an original id, the stream position stands in for it.
    assert replay_headers(_record({}), "r9")["Nats-Msg-Id"] == "CHAT:42:replay:r9"


def test_dead_letter_redrive_headers() -> None:
    record = _record(
        {
            "Nats-Msg-Id": "dl:CHAT:7:chat",
            "VP-Original-Subject": "chat.message.r1",
            "VP-Original-Stream": "CHAT",
            "VP-Original-Seq": "7",
            "VP-Consumer": "chat",
            "VP-Error": "PermanentError: nope",
            "VP-Deliveries": "1",
            "VP-Original-Msg-Id": "evt-1",
            "correlation_id": "c",
        },
        seq=3,
    )
    letter = DeadLetter.from_record(record)
    assert (letter.original_subject, letter.original_stream, letter.original_seq) == (
        "chat.message.r1",
        "CHAT",
        7,
    )
    assert letter.redrive_headers() == {
        "Nats-Msg-Id": "evt-1:redrive:3",
        "VP-Redrive-Of": "3",
        "correlation_id": "c",
    }


# --- AsyncAPI ------------------------------------------------------------------------


def test_asyncapi_lists_subscribers_and_declared_publishers() -> None:
    broker = create_broker(load_settings({}), name="uploader")

    from events.consumer import durable_subscriber

    @durable_subscriber(broker, UploadCompleted, durable="uploader-test")
    async def on_upload(event: UploadCompleted, msg: NatsMessage) -> None:
        raise AssertionError("never called: the broker is not started")

    # A plain Struct (not an Event) as a request/reply handler's parameter: the case
    # FastStream issue #2101 crashes on.
    @broker.subscriber("rpc.test.lookup", title="uploader:rpc:lookup")
    async def lookup(query: LookupQuery) -> bytes:
        raise AssertionError("never called")

    declare_publishes(broker, ChatAccepted)
    document = build_asyncapi([broker])

    channels = document["channels"]
    assert set(channels) == {
        "uploader-test:upload.completed",
        "uploader:publishes:chat.accepted",
        "uploader:rpc:lookup",
    }
    assert channels["uploader-test:upload.completed"]["address"] == "upload.completed.*"
    assert channels["uploader:publishes:chat.accepted"]["address"] == "chat.accepted.*"
    assert publisher_title("uploader", ChatAccepted) == "uploader:publishes:chat.accepted"
    actions = {name: op["action"] for name, op in document["operations"].items()}
    assert actions == {
        "uploader-test:upload.completed": "receive",
        "uploader:publishes:chat.accepted": "send",
        "uploader:rpc:lookup": "receive",
    }

    schemas = document["components"]["schemas"]
    consumed = _payload(document, "uploader-test:upload.completed")
    published = _payload(document, "uploader:publishes:chat.accepted")
    # Every field of the event (envelope included), with nested Structs described.
    assert set(UploadCompleted.__struct_fields__) | {"type"} == set(consumed["properties"])
    assert consumed["properties"]["probe"]["properties"]["duration_s"] == {"type": "number"}
    assert set(ChatAccepted.__struct_fields__) | {"type"} == set(published["properties"])
    assert published["properties"]["type"] == {"enum": ["chat.accepted"]}
    assert {"message_id", "stream_id", "user", "text", "ts"} <= set(published["required"])
    query = _payload(document, "uploader:rpc:lookup")
    assert query["properties"] == {
        "upload_id": {"type": "string"},
        "limit": {"type": "integer", "default": 10},
    }
    # The hooks lent to msgspec.Struct for the generation are taken back.
    assert "__get_pydantic_core_schema__" not in vars(msgspec.Struct)
    # The whole catalog is described, used by a channel or not.
    assert set(EVENTS_BY_TYPE) <= set(schemas)
    json.dumps(document)  # plain JSON data


def test_a_batch_subscriber_documents_an_array_and_refuses_workers() -> None:
    from events.consumer import durable_subscriber

    broker = create_broker(load_settings({}), name="gateway")

    @durable_subscriber(broker, ChunkUploaded, durable="batch-doc", batch_window_s=0.25)
    async def on_chunks(chunks: list[ChunkUploaded]) -> None:
        raise AssertionError("never called: the broker is not started")

    payload = _payload(build_asyncapi([broker]), "batch-doc:chunk.uploaded")
    assert payload["type"] == "array"
    assert set(ChunkUploaded.__struct_fields__) <= set(payload["items"]["properties"])
    with pytest.raises(ValueError, match="do not combine"):
        durable_subscriber(
            broker, ChunkUploaded, durable="batch-workers", batch_window_s=0.25, max_workers=4
        )


class LookupQuery(msgspec.Struct, frozen=True, kw_only=True):
    upload_id: str
    limit: int = 10


def _payload(document: dict[str, Any], channel: str) -> dict[str, Any]:
    ref = next(iter(document["channels"][channel]["messages"].values()))["$ref"]
    message = document["components"]["messages"][ref.rsplit("/", 1)[-1]]
    schema: dict[str, Any] = document["components"]["schemas"][
        message["payload"]["$ref"].rsplit("/", 1)[-1]
    ]
    return schema


def _package(root: Path, name: str, bus_source: str) -> None:
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("")
    (root / name / "bus.py").write_text(textwrap.dedent(bus_source))


def test_component_brokers_are_imported_missing_ones_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _package(
        tmp_path,
        "vp_fake_ok",
        """
        from events.broker import create_broker as _create
        from events.catalog import StreamStarted
        from events.declare import declare_publishes

        def create_broker(settings):
            broker = _create(settings, name="fakeok")
            declare_publishes(broker, StreamStarted)
            return broker
        """,
    )
    _package(tmp_path, "vp_fake_broken", "import vp_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    settings = load_settings({})
    notes: list[str] = []

    brokers = build_component_brokers(
        settings, ("vp_fake_ok.bus", "vp_absent_pkg.bus", "vp_fake_ok.absent"), note=notes.append
    )
    assert len(brokers) == 1
    assert notes == [
        "vp_absent_pkg.bus: not present, skipped",
        "vp_fake_ok.absent: not present, skipped",
    ]
    assert "fakeok:publishes:stream.started" in build_asyncapi(brokers)["channels"]

    # A module that exists but fails to import is a bug to surface, not a skip.
    with pytest.raises(ModuleNotFoundError, match="vp_no_such_dependency"):
        build_component_brokers(settings, ("vp_fake_broken.bus",))
