"""The ``event_streams`` fixture's reset: every catalog stream comes back empty and
without consumers, and the account's JetStream folder is never left empty (nats-server
removes an empty one in the background after a stream delete, which raced the next
stream's creation: 10049 "error creating store for stream")."""

from __future__ import annotations

import pytest
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig

from common.nats_server import NatsServerProcess
from common.settings import Settings
from events.streams import ACCOUNTS, ALL_STREAMS, stream_for_subject
from tests.fixtures.nats import ANCHOR_NAME, ANCHOR_STREAM, reset_event_streams

ROUNDS = 20


async def test_the_reset_empties_the_catalog_and_keeps_the_account_folder(
    nats_server: NatsServerProcess, event_streams: JetStreamContext, settings: Settings
) -> None:
    js = event_streams
    await js.publish("user.created.u1", b"{}", stream=ACCOUNTS.name)
    await js.add_consumer(ACCOUNTS.name, ConsumerConfig(durable_name="left-over"))
    for _ in range(ROUNDS):
        await reset_event_streams(js, settings)
        # The anchor's folder sits beside the catalog's, so the account folder that
        # holds them both is never empty when a catalog stream is deleted.
        streams_dir = nats_server.store_dir / "jetstream" / "$G" / "streams"
        assert (streams_dir / ANCHOR_NAME).is_dir()
        assert (streams_dir / ACCOUNTS.name).is_dir()
    for stream in ALL_STREAMS:
        info = await js.stream_info(stream.name)
        assert info.state.messages == 0, stream.name
        assert info.state.consumer_count == 0, stream.name
    # The anchor takes no subject the catalog uses.
    for subject in ANCHOR_STREAM.subjects or []:
        with pytest.raises(LookupError):
            stream_for_subject(subject)
