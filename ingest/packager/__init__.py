"""Live packaging: RTMP media → LL-HLS fMP4 in the object store, announced on the bus.

Public surface:

- :class:`LivePackaging` — one per ingest process; its ``create_session_sink`` is the
  factory the RTMP server calls for each publish (``(stream_id, session_id, user_id)
  -> sink``); the sink has the ``ingest.media`` interface.
- :func:`create_packaging` — builds it from the settings, a started broker and a ready
  store.
- :class:`PackagerConfig`, :class:`PartTiming`.

Inside: ``codecs`` (AVC/AAC records), ``fmp4`` (the writer), ``boxes`` (box splitter),
``cutter`` (part/segment rules), ``timeline`` (timestamp repair), ``packager`` (the
sans-IO core), ``session`` (one connection: thread, store, events), ``broadcast`` and
``live`` (broadcasts across reconnects), ``handoff`` (… and across ingest processes),
``retention`` (part clean-up), ``thumbnail``,
``titles``, ``recording``, ``keys``.
"""

from __future__ import annotations

import os
import socket
import uuid

from faststream.nats import NatsBroker

from common.settings import Settings
from common.store import ObjectStore
from events.publisher import EventPublisher
from ingest.packager.handoff import BroadcastHandoff
from ingest.packager.live import LivePackaging
from ingest.packager.packager import PackagerConfig
from ingest.packager.session import PartObserver, PartTiming, SessionSink
from ingest.packager.titles import channel_describer

PRODUCER = "ingest"


def packager_config(settings: Settings) -> PackagerConfig:
    return PackagerConfig(
        part_target_s=settings.live_part_target_s,
        segment_target_s=settings.live_segment_target_s,
        target_duration_s=settings.live_target_duration_s,
    )


def create_packaging(
    settings: Settings,
    broker: NatsBroker,
    store: ObjectStore,
    *,
    on_part: PartObserver | None = None,
) -> LivePackaging:
    """The ingest process's packaging: parts are published with one quick retry only."""
    return LivePackaging(
        store,
        EventPublisher(broker, producer=PRODUCER),
        part_publisher=EventPublisher(broker, producer=PRODUCER, timeout_s=1.0, attempts=2),
        config=packager_config(settings),
        record=settings.live_record,
        on_part=on_part,
        reconnect_window_s=settings.live_reconnect_window_s,
        thumbnail_interval_s=settings.live_thumbnail_interval_s,
        # Lazy: the broker's connection exists once it has started.
        describe=channel_describer(lambda: broker.connection.jetstream()),  # noqa: PLW0108
        # A reconnect that lands on another ingest process continues the broadcast there.
        handoff=BroadcastHandoff(
            lambda: broker.connection,
            instance=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            replicas=settings.nats_replicas,
        ),
    )


__all__ = [
    "LivePackaging",
    "PackagerConfig",
    "PartObserver",
    "PartTiming",
    "SessionSink",
    "create_packaging",
    "packager_config",
]
