"""JetStream stream definitions, created once by ``videopick events init``.

Services bind to these streams with ``declare=False`` and never redeclare them: a
stream declared in code would overwrite limits an operator set (NOTES.md, FastStream).

Durability: JetStream acknowledges a write once it is in the OS page cache and fsyncs
on ``sync_interval`` (2 min by default), so a power loss on a single node can drop
acknowledged events (Jepsen, NATS 2.12.1). The embedded single-node setup accepts
that for speed; the production shape (infra/) runs three replicas with
``sync_interval: always`` in the server config, which costs throughput for safety.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from common.settings import Settings

DAY_S = 24 * 3600.0


@dataclass(frozen=True)
class StreamDef:
    name: str
    subjects: tuple[str, ...]
    description: str
    # None: the settings' default history; live media and stats need less.
    max_age_s: float | None = None
    max_bytes: int | None = None


ACCOUNTS = StreamDef("ACCOUNTS", ("user.>", "channel.>"), "users, channels, stream-key hashes")
STREAMS = StreamDef(
    "STREAMS",
    (
        "stream.started.>",
        "stream.stop_requested.>",
        "stream.ended.>",
        "stream.recorded.>",
    ),
    "live stream lifecycle",
)
# Parts and segments arrive several times a second per live; a day is plenty.
LIVE_MEDIA = StreamDef(
    "LIVE_MEDIA",
    ("stream.part.>", "stream.segment.>", "stream.thumbnail.>"),
    "LL-HLS parts and segments of live streams, and their thumbnails",
    max_age_s=DAY_S,
)
UPLOADS = StreamDef("UPLOADS", ("upload.>", "chunk.>"), "upload lifecycle and durable chunks")
MEDIA = StreamDef("MEDIA", ("transcode.>", "video.>"), "transcoding jobs and the video library")
CHAT = StreamDef("CHAT", ("chat.>",), "chat messages, decisions, effects, super chats")
STATS = StreamDef("STATS", ("stats.>",), "viewer and ingest statistics", max_age_s=DAY_S)
DEAD_LETTERS = StreamDef(
    "DEAD_LETTERS", ("deadletter.>",), "messages a consumer gave up on, for redrive"
)

ALL_STREAMS: tuple[StreamDef, ...] = (
    ACCOUNTS,
    STREAMS,
    LIVE_MEDIA,
    UPLOADS,
    MEDIA,
    CHAT,
    STATS,
    DEAD_LETTERS,
)


# Durable consumers no version subscribes any more, as (stream, durable): ``init``
# deletes them, so a deployment upgraded in place stops keeping their state and their
# ever-growing pending count (which dashboards would read as a stuck consumer).
RETIRED_CONSUMERS: tuple[tuple[str, str], ...] = (
    # The upload status projection's chunk fold (gateway/tus/status.py docstring).
    ("UPLOADS", "gateway-upload-status-chunk-uploaded"),
)


def stream_for_subject(subject: str) -> StreamDef:
    """The stream that stores ``subject`` (first token match, as JetStream does)."""
    for stream in ALL_STREAMS:
        for pattern in stream.subjects:
            if _matches(pattern, subject):
                return stream
    raise LookupError(f"no stream stores subject {subject!r}")


def _matches(pattern: str, subject: str) -> bool:
    pattern_tokens = pattern.split(".")
    subject_tokens = subject.split(".")
    for index, part in enumerate(pattern_tokens):
        if part == ">":
            return len(subject_tokens) > index
        if index >= len(subject_tokens):
            return False
        if part not in ("*", subject_tokens[index]):
            return False
    return len(pattern_tokens) == len(subject_tokens)


def stream_config(stream: StreamDef, settings: Settings) -> StreamConfig:
    return StreamConfig(
        name=stream.name,
        description=stream.description,
        subjects=list(stream.subjects),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=stream.max_age_s or settings.events_max_age_days * DAY_S,
        max_bytes=stream.max_bytes or settings.events_max_bytes,
        duplicate_window=settings.events_duplicate_window_s,
        num_replicas=settings.nats_replicas,
    )


async def init_streams(js: JetStreamContext, settings: Settings) -> list[tuple[str, str]]:
    """Create missing streams, update existing ones to the declared limits.

    Returns (name, "created" | "updated") for each stream, and
    ("stream/durable", "retired consumer removed") for each one removed, for the operator.
    """
    results: list[tuple[str, str]] = []
    for stream in ALL_STREAMS:
        config = stream_config(stream, settings)
        try:
            await js.stream_info(stream.name)
        except NotFoundError:
            await js.add_stream(config)
            results.append((stream.name, "created"))
        else:
            await js.update_stream(config)
            results.append((stream.name, "updated"))
    for stream_name, durable in RETIRED_CONSUMERS:
        try:
            await js.delete_consumer(stream_name, durable)
        except NotFoundError:
            continue
        results.append((f"{stream_name}/{durable}", "retired consumer removed"))
    return results
