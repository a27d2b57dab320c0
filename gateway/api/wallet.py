"""``/api/v2/wallet``: a user's credits, what they earned, and a dev/admin top-up.

The ledger belongs to the chat component; reads ask it (``rpc.chat.wallet``), a
top-up is an event (``chat.topup``) it applies exactly once. ``POST /topup`` waits a
few seconds for that and answers 200 with the new balance, or 202 if the ledger has
not caught up yet (the top-up is durable in the event log and will be applied).

Top-ups are open in ``env=dev`` (no payment provider yet) and otherwise only to the
users listed in ``VIDEOPICK_CHAT_ADMIN_USER_IDS``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Final

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.params import JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from common.settings import Settings
from events.catalog import ChatTopup
from events.chat_queries import WALLET_SUBJECT, LedgerEntryView, WalletQuery, WalletView
from gateway.auth.dependencies import REQUIRES_AUTH, CurrentUserDep
from gateway.centrifuge.endpoint import STATE_KEY
from gateway.centrifuge.service import ChatGateway
from gateway.errors import ApiError, UnavailableError
from gateway.services import ServicesDep

QUERY_TIMEOUT_S: Final = 3.0
TOPUP_WAIT_S: Final = 5.0
TOPUP_POLL_S: Final = 0.05
MAX_TOPUP: Final = 1_000_000

_view_decoder: Final = msgspec.json.Decoder(WalletView)


class ForbiddenError(ApiError):
    status_code = 403
    slug = "forbidden"
    title = "Forbidden"


class LedgerEntryOut(msgspec.Struct):
    tx_id: str
    kind: str
    amount: int
    created_at_ms: int
    counterparty_user_id: str
    stream_id: str
    message_id: str
    text: str


class EarningsOut(msgspec.Struct):
    total: int
    count: int
    recent: list[LedgerEntryOut]


class WalletOut(msgspec.Struct):
    user_id: str
    balance: int
    entries: list[LedgerEntryOut]
    earnings: EarningsOut
    # Whether POST /topup is open to this user (env=dev, or an admin): the web client
    # shows its top-up button only then.
    can_topup: bool = False


class TopupIn(msgspec.Struct, forbid_unknown_fields=True):
    amount: Annotated[int, msgspec.Meta(ge=1, le=MAX_TOPUP)]
    # Whose wallet (default: the caller's).
    user_id: str = ""
    note: Annotated[str, msgspec.Meta(max_length=200)] = ""


class TopupOut(msgspec.Struct):
    tx_id: str
    user_id: str
    amount: int
    applied: bool
    balance: int | None


def _entry(view: LedgerEntryView) -> LedgerEntryOut:
    return LedgerEntryOut(
        tx_id=view.tx_id,
        kind=view.kind,
        amount=view.amount,
        created_at_ms=view.created_at_ms,
        counterparty_user_id=view.counterparty_user_id,
        stream_id=view.stream_id,
        message_id=view.message_id,
        text=view.text,
    )


def _chat(request: Request[Any, Any, Any]) -> ChatGateway:
    chat = getattr(request.app.state, STATE_KEY, None)
    if not isinstance(chat, ChatGateway):
        raise UnavailableError("chat is starting or stopping")
    return chat


async def query_wallet(chat: ChatGateway, query: WalletQuery) -> WalletView:
    try:
        reply = await chat.nc.request(
            WALLET_SUBJECT, msgspec.json.encode(query), timeout=QUERY_TIMEOUT_S
        )
    except (NatsTimeoutError, NoRespondersError, TimeoutError) as exc:
        raise UnavailableError("the wallet service did not answer; try again") from exc
    try:
        view = _view_decoder.decode(reply.data)
    except msgspec.DecodeError as exc:
        raise UnavailableError("the wallet service answered garbage") from exc
    if view.error:
        raise UnavailableError("the wallet service failed; try again")
    return view


def _may_topup(settings: Settings, user_id: str) -> bool:
    return settings.env == "dev" or user_id in settings.chat_admin_user_ids


@get("/", summary="My wallet: balance, recent entries, earnings", security=REQUIRES_AUTH)
async def get_wallet(
    request: Request[Any, Any, Any],
    current_user: CurrentUserDep,
    services: ServicesDep,
    limit: Annotated[int, QueryParameter(ge=1, le=200)] = 20,
) -> WalletOut:
    view = await query_wallet(
        _chat(request), WalletQuery(user_id=current_user.user_id, limit=limit)
    )
    return WalletOut(
        user_id=view.user_id,
        balance=view.balance,
        entries=[_entry(e) for e in view.entries],
        earnings=EarningsOut(
            total=view.earnings_total,
            count=view.earnings_count,
            recent=[_entry(e) for e in view.earnings],
        ),
        can_topup=_may_topup(services.settings, current_user.user_id),
    )


@get("/earnings", summary="Super chats my channel received", security=REQUIRES_AUTH)
async def get_earnings(
    request: Request[Any, Any, Any],
    current_user: CurrentUserDep,
    limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
) -> EarningsOut:
    view = await query_wallet(
        _chat(request), WalletQuery(user_id=current_user.user_id, limit=limit)
    )
    return EarningsOut(
        total=view.earnings_total,
        count=view.earnings_count,
        recent=[_entry(e) for e in view.earnings],
    )


@post(
    "/topup",
    summary="Add credits (env=dev, or an admin)",
    security=REQUIRES_AUTH,
    status_code=HTTP_200_OK,
)
async def topup(
    request: Request[Any, Any, Any],
    current_user: CurrentUserDep,
    services: ServicesDep,
    data: JSONBody[TopupIn],
) -> Response[TopupOut]:
    if not _may_topup(services.settings, current_user.user_id):
        raise ForbiddenError("top-ups are for administrators (or env=dev)")
    chat = _chat(request)
    target = data.user_id or current_user.user_id
    event = ChatTopup(
        user_id=target, amount=data.amount, actor_user_id=current_user.user_id, note=data.note
    )
    await services.publisher.publish(event)
    tx_id = f"topup:{event.event_id}"
    deadline = asyncio.get_running_loop().time() + TOPUP_WAIT_S
    while True:
        view = await query_wallet(chat, WalletQuery(user_id=target, limit=1, tx_id=tx_id))
        if view.tx_applied or asyncio.get_running_loop().time() >= deadline:
            break
        await asyncio.sleep(TOPUP_POLL_S)
    body = TopupOut(
        tx_id=tx_id,
        user_id=target,
        amount=data.amount,
        applied=view.tx_applied,
        balance=view.balance if view.tx_applied else None,
    )
    return Response(body, status_code=HTTP_200_OK if view.tx_applied else HTTP_202_ACCEPTED)


wallet_router = Router(
    path="/api/v2/wallet", route_handlers=[get_wallet, get_earnings, topup], tags=["wallet"]
)
