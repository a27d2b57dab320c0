"""A broadcast's title and description, for its recording: the channel's last
``channel.updated`` (what ``POST /api/v2/streams/start`` set), read straight from the
ACCOUNTS stream by subject — no table of ingest's own, and a rebuild-free answer that
is the same on every ingest process.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from events.catalog import ChannelUpdated, decode_event
from events.streams import ACCOUNTS
from ingest.packager.live import Describe


def channel_describer(jetstream: Callable[[], JetStreamContext]) -> Describe:
    """``jetstream`` is called at each lookup: the broker connects after this is built."""

    async def describe(stream_id: str) -> tuple[str, str]:
        subject = f"{ChannelUpdated.event_type()}.{stream_id}"
        try:
            message = await jetstream().get_last_msg(ACCOUNTS.name, subject)
        except NotFoundError:
            return "", ""  # never set: the recording goes out untitled
        try:
            event = decode_event(message.data or b"")
        except msgspec.MsgspecError:
            return "", ""
        if not isinstance(event, ChannelUpdated):
            return "", ""
        return event.title, event.description

    return describe
