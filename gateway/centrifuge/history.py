"""The chat history, asked of the chat component (``rpc.chat.history``, request/reply)."""

from __future__ import annotations

from typing import Final

import msgspec
from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from events.chat_queries import HISTORY_SUBJECT, HistoryPage, HistoryQuery
from gateway.centrifuge.channels import message_data
from gateway.centrifuge.sequencer import Pub

DEFAULT_TIMEOUT_S: Final = 3.0

_page_decoder: Final = msgspec.json.Decoder(HistoryPage)


class HistoryUnavailable(Exception):  # noqa: N818 - reads as the state at call sites
    """The chat component did not answer (down, or too slow), or answered an error."""


class HistoryClient:
    def __init__(self, nc: NatsClient, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._nc = nc
        self._timeout_s = timeout_s

    async def query(self, query: HistoryQuery) -> HistoryPage:
        try:
            reply = await self._nc.request(
                HISTORY_SUBJECT, msgspec.json.encode(query), timeout=self._timeout_s
            )
        except (NatsTimeoutError, NoRespondersError, TimeoutError) as exc:
            raise HistoryUnavailable(f"chat history did not answer: {exc!r}") from exc
        try:
            page = _page_decoder.decode(reply.data)
        except msgspec.DecodeError as exc:
            raise HistoryUnavailable(f"chat history answered garbage: {exc}") from exc
        if page.error:
            raise HistoryUnavailable(f"chat history refused: {page.error}")
        return page


def page_pubs(page: HistoryPage) -> list[Pub]:
    """The page's messages as publications, built exactly like live ones."""
    return [Pub.build(m.offset, m.message_id, message_data(m)) for m in page.messages]
