"""What the operator sees in ``videopick events streams``: streams and their consumers.

Read through the JetStream API directly: nats-py's ``StreamState`` leaves out the
first and last message times, which are the first thing an operator asks about.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nats.js import JetStreamContext

from events.replay import READER_PREFIX

API_TIMEOUT_S = 5.0
# JetStream reports an empty stream's times as the zero time.
_ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass(frozen=True)
class ConsumerSummary:
    name: str
    durable: bool
    filter: str
    pending: int  # matching messages not yet delivered
    ack_pending: int  # delivered, not yet acknowledged
    redelivered: int
    waiting: int  # pull requests waiting (live replicas of a pull consumer)
    delivered_stream_seq: int
    lag: int  # stream last seq - delivered stream seq (counts unmatched subjects too)


@dataclass(frozen=True)
class StreamSummary:
    name: str
    subjects: tuple[str, ...]
    messages: int
    bytes: int
    first_seq: int
    last_seq: int
    first_time: datetime | None
    last_time: datetime | None
    consumers: list[ConsumerSummary] = field(default_factory=list)


async def _api(js: JetStreamContext, subject: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = await js._nc.request(f"$JS.API.{subject}", json.dumps(body).encode(), API_TIMEOUT_S)
    data: dict[str, Any] = json.loads(reply.data)
    if error := data.get("error"):
        raise RuntimeError(f"JetStream {subject}: {error.get('description', error)}")
    return data


async def _paged(js: JetStreamContext, subject: str, key: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        page = await _api(js, subject, {"offset": len(items)})
        batch = page.get(key) or []
        items.extend(batch)
        if not batch or len(items) >= int(page.get("total", 0)):
            return items


def _time(value: str | None) -> datetime | None:
    if not value or value == _ZERO_TIME:
        return None
    return datetime.fromisoformat(value)  # nanoseconds are cut to microseconds


def _consumer(raw: dict[str, Any], last_seq: int) -> ConsumerSummary:
    config = raw.get("config", {})
    delivered = int(raw.get("delivered", {}).get("stream_seq", 0))
    filters = config.get("filter_subjects") or [config.get("filter_subject") or ">"]
    return ConsumerSummary(
        name=raw["name"],
        durable=bool(config.get("durable_name")),
        filter=",".join(filters),
        pending=int(raw.get("num_pending", 0)),
        ack_pending=int(raw.get("num_ack_pending", 0)),
        redelivered=int(raw.get("num_redelivered", 0)),
        waiting=int(raw.get("num_waiting", 0)),
        delivered_stream_seq=delivered,
        lag=max(last_seq - delivered, 0),
    )


async def collect(js: JetStreamContext, *, include_readers: bool = False) -> list[StreamSummary]:
    """Every stream with its consumers, sorted by name.

    ``include_readers``: also show the throw-away consumers of running tails and
    replays (``READER_PREFIX``), hidden by default as noise.
    """
    summaries: list[StreamSummary] = []
    for raw in await _paged(js, "STREAM.LIST", "streams"):
        config, state = raw["config"], raw["state"]
        name = config["name"]
        last_seq = int(state.get("last_seq", 0))
        consumers = [
            _consumer(item, last_seq)
            for item in await _paged(js, f"CONSUMER.LIST.{name}", "consumers")
            if include_readers or not item["name"].startswith(READER_PREFIX)
        ]
        summaries.append(
            StreamSummary(
                name=name,
                subjects=tuple(config.get("subjects") or ()),
                messages=int(state.get("messages", 0)),
                bytes=int(state.get("bytes", 0)),
                first_seq=int(state.get("first_seq", 0)),
                last_seq=last_seq,
                first_time=_time(state.get("first_ts")),
                last_time=_time(state.get("last_ts")),
                consumers=sorted(consumers, key=lambda c: c.name),
            )
        )
    return sorted(summaries, key=lambda s: s.name)
