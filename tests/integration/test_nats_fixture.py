"""The NATS fixtures.

- ``event_streams``' reset: every catalog stream comes back empty and without
  consumers, and the account's JetStream folder is never left empty (nats-server removes
  an empty one in the background after a stream delete, which raced the next stream's
  creation: 10049 "error creating store for stream").
- A session server that died is started again, with a warning that says so.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig

from common.nats_server import NatsServerProcess
from common.settings import Settings
from events.streams import ACCOUNTS, ALL_STREAMS, stream_for_subject
from tests.fixtures.nats import ANCHOR_NAME, ANCHOR_STREAM, reset_event_streams, restart_if_died

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


def test_a_server_that_died_is_started_again_with_a_warning(tmp_path: Path) -> None:
    server = NatsServerProcess(
        tmp_path / "js", max_file_store="64M", log_file=tmp_path / "nats-server.log"
    )
    server.start()
    try:
        first_pid = server.pid
        assert first_pid is not None
        assert server.exit_code is None
        os.kill(first_pid, signal.SIGKILL)  # not through the object: it "died"
        assert _exit_code_within(server, 10.0) == -signal.SIGKILL
        with pytest.warns(UserWarning, match=r"exited with -9; started again"):
            restart_if_died(server)
        assert server.exit_code is None
        assert server.pid != first_pid
        with socket.create_connection(("127.0.0.1", server.port), timeout=2):
            pass
    finally:
        server.stop()
    assert server.exit_code is None  # stopped on purpose: nothing to start again


def _exit_code_within(server: NatsServerProcess, seconds: float) -> int | None:
    deadline = time.monotonic() + seconds
    while server.exit_code is None and time.monotonic() < deadline:
        time.sleep(0.05)  # polling a process's exit under a deadline
    return server.exit_code
