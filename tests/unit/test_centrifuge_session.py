"""The Centrifugo protocol core without I/O: every command, bad input, exact codes.

Codes follow centrifugal/centrifuge: disconnect 3501 "bad request" for malformed
frames, commands before connect, a second connect, missing ids, unknown methods and
empty channels; reply errors 102 unknown channel, 103 permission denied, 105 already
subscribed, 107 bad request, 108 not available; our chat range for too-long text.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from gateway.centrifuge import codes
from gateway.centrifuge.protocol import (
    MAX_COMMANDS_PER_FRAME,
    ProtocolError,
    StreamPosition,
    encode_publication,
    encode_push_pub,
    parse_frame,
)
from gateway.centrifuge.session import (
    MAX_PUBLISHES_IN_FLIGHT,
    MAX_SUBSCRIPTIONS,
    Action,
    Authenticate,
    Close,
    History,
    HistoryResult,
    Identity,
    PresenceStats,
    Publish,
    Session,
    SessionConfig,
    SessionState,
    Subscribe,
    SubscribeResult,
    Unsubscribe,
    Write,
)

pytestmark = pytest.mark.unit

USER = Identity(user_id="u1", name="alice")


def frame(*commands: dict[str, Any]) -> str:
    return "\n".join(json.dumps(c) for c in commands)


def writes(actions: list[Action]) -> list[dict[str, Any]]:
    return [json.loads(a.data) for a in actions if isinstance(a, Write)]


def closes(actions: list[Action]) -> list[int]:
    return [a.disconnect.code for a in actions if isinstance(a, Close)]


def connected(identity: Identity = USER, config: SessionConfig | None = None) -> Session:
    session = Session(client_id="c1", config=config or SessionConfig(), opened_at=0.0)
    actions = session.receive(frame({"id": 1, "connect": {"token": "t", "name": "py"}}))
    assert actions == [Authenticate(1, "t", "py", "")]
    reply = session.connected(1, identity, now=0.0)
    assert writes(reply) == [
        {"id": 1, "connect": {"client": "c1", "version": "videopick", "ping": 25, "pong": True}}
    ]
    assert session.state is SessionState.CONNECTED
    return session


# --- framing ---------------------------------------------------------------------------


def test_batches_are_newline_separated_and_blank_lines_skipped() -> None:
    commands = parse_frame('{"id":1,"ping":{}}\n\n{"id":2,"ping":{}}\n')
    assert [c.id for c in commands] == [1, 2]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{", "malformed JSON"),
        ("[]", "Expected `object`"),
        ('{"id":"1"}', "Expected `int`"),
        ('{"id":-1}', "not a uint32"),
        ('{"id":4294967296}', "not a uint32"),
        ('{"id":1,"ping":{},"connect":{}}', "more than one request"),
        ('{"id":1}\nnot json', "command 2: malformed JSON"),
    ],
)
def test_parse_errors_are_precise(data: str, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        parse_frame(data)


def test_too_many_commands_in_one_frame() -> None:
    data = "\n".join(f'{{"id":{i},"ping":{{}}}}' for i in range(1, MAX_COMMANDS_PER_FRAME + 2))
    with pytest.raises(ProtocolError, match="more than 256 commands"):
        parse_frame(data)


def test_push_encoding_is_exact() -> None:
    pub = encode_publication(b'{"text":"<b>hi</b>"}', 7)
    assert encode_push_pub(b'"chat:abc"', pub) == (
        b'{"push":{"channel":"chat:abc","pub":{"data":{"text":"<b>hi</b>"},"offset":7}}}'
    )
    assert encode_publication(b"{}") == b'{"data":{}}'


# --- connect -----------------------------------------------------------------------------


def test_malformed_json_disconnects_bad_request() -> None:
    session = Session(client_id="c1")
    assert closes(session.receive("{nope")) == [3501]
    assert session.state is SessionState.CLOSED
    assert session.receive('{"id":1,"connect":{}}') == []


def test_command_before_connect_disconnects() -> None:
    session = Session(client_id="c1")
    assert closes(session.receive(frame({"id": 1, "subscribe": {"channel": "chat:a"}}))) == [3501]


def test_second_connect_disconnects() -> None:
    session = connected()
    assert closes(session.receive(frame({"id": 2, "connect": {}}))) == [3501]


def test_anonymous_connect_has_no_token() -> None:
    session = Session(client_id="c1")
    assert session.receive(frame({"id": 1, "connect": {}})) == [Authenticate(1, "", "", "")]


def test_expired_token_gets_109_and_no_more_commands() -> None:
    session = Session(client_id="c1")
    session.receive(frame({"id": 1, "connect": {"token": "old"}}))
    assert writes(session.connect_refused(1, codes.TOKEN_EXPIRED)) == [
        {"id": 1, "error": {"code": 109, "message": "token expired"}}
    ]
    assert closes(session.receive(frame({"id": 2, "subscribe": {"channel": "chat:a"}}))) == [3501]


def test_invalid_token_disconnects_3500() -> None:
    session = Session(client_id="c1")
    session.receive(frame({"id": 1, "connect": {"token": "forged"}}))
    assert closes(session.connect_refused(1, codes.INVALID_TOKEN)) == [3500]


def test_commands_batched_after_connect_wait_for_it() -> None:
    """centrifuge-js sends connect and its subscribes in one frame."""
    session = Session(client_id="c1")
    actions = session.receive(
        frame(
            {"id": 1, "connect": {}},
            {"id": 2, "subscribe": {"channel": "chat:a"}},
            {"id": 3, "subscribe": {"channel": "chat:b"}},
        )
    )
    assert actions == [Authenticate(1, "", "", "")]
    after = session.connected(1, Identity(), now=0.0)
    assert writes(after)[0]["id"] == 1
    assert after[1:] == [Subscribe(2, "chat:a", "a", None), Subscribe(3, "chat:b", "b", None)]


def test_commands_batched_after_a_refused_connect_are_dropped() -> None:
    session = Session(client_id="c1")
    session.receive(frame({"id": 1, "connect": {"token": "x"}}, {"id": 2, "ping": {}}))
    assert writes(session.connect_refused(1, codes.TOKEN_EXPIRED)) == [
        {"id": 1, "error": {"code": 109, "message": "token expired"}}
    ]


# --- commands ----------------------------------------------------------------------------


def test_unknown_method_disconnects() -> None:
    session = connected()
    assert closes(session.receive(frame({"id": 2, "teleport": {}}))) == [3501]


def test_command_without_id_disconnects() -> None:
    session = connected()
    assert closes(session.receive(frame({"subscribe": {"channel": "chat:a"}}))) == [3501]


def test_send_is_not_available() -> None:
    session = connected()
    assert closes(session.receive(frame({"send": {"data": {}}}))) == [3508]


@pytest.mark.parametrize("method", ["rpc", "refresh", "sub_refresh", "presence"])
def test_unsupported_methods_answer_108(method: str) -> None:
    session = connected()
    body: dict[str, Any] = {"channel": "chat:a"} if method in ("sub_refresh", "presence") else {}
    assert writes(session.receive(frame({"id": 5, method: body}))) == [
        {"id": 5, "error": {"code": 108, "message": "not available"}}
    ]


def test_ping_command_gets_an_empty_result() -> None:
    session = connected()
    assert writes(session.receive(frame({"id": 3, "ping": {}}))) == [{"id": 3, "ping": {}}]


def test_subscribe_flow_and_errors() -> None:
    session = connected()
    assert session.receive(frame({"id": 2, "subscribe": {"channel": "chat:abc"}})) == [
        Subscribe(2, "chat:abc", "abc", None)
    ]
    reply = session.subscribed(
        2,
        SubscribeResult(
            recoverable=True,
            epoch="e1",
            offset=3,
            publications=[msgspec.Raw(encode_publication(b'{"text":"x"}', 3))],
        ),
    )
    assert json.loads(reply) == {
        "id": 2,
        "subscribe": {
            "recoverable": True,
            "epoch": "e1",
            "offset": 3,
            "publications": [{"data": {"text": "x"}, "offset": 3}],
        },
    }
    assert writes(session.receive(frame({"id": 3, "subscribe": {"channel": "chat:abc"}}))) == [
        {"id": 3, "error": {"code": 105, "message": "already subscribed"}}
    ]
    assert writes(session.receive(frame({"id": 4, "subscribe": {"channel": "news:1"}}))) == [
        {"id": 4, "error": {"code": 102, "message": "unknown channel"}}
    ]
    assert writes(session.receive(frame({"id": 5, "subscribe": {"channel": "chat:a.b"}}))) == [
        {"id": 5, "error": {"code": 102, "message": "unknown channel"}}
    ]
    assert closes(session.receive(frame({"id": 6, "subscribe": {"channel": ""}}))) == [3501]


def test_subscribe_with_recovery_position() -> None:
    session = connected()
    actions = session.receive(
        frame(
            {
                "id": 2,
                "subscribe": {"channel": "chat:a", "recover": True, "offset": 9, "epoch": "e"},
            }
        )
    )
    assert actions == [Subscribe(2, "chat:a", "a", StreamPosition(offset=9, epoch="e"))]


def test_subscription_limit() -> None:
    session = connected()
    for number in range(MAX_SUBSCRIPTIONS):
        session.receive(frame({"id": 10 + number, "subscribe": {"channel": f"chat:c{number}"}}))
    assert writes(session.receive(frame({"id": 99, "subscribe": {"channel": "chat:more"}}))) == [
        {"id": 99, "error": {"code": 106, "message": "limit exceeded"}}
    ]


def test_failed_subscribe_can_be_retried() -> None:
    session = connected()
    session.receive(frame({"id": 2, "subscribe": {"channel": "chat:a"}}))
    assert json.loads(session.subscribe_failed(2, "chat:a", codes.INTERNAL)) == {
        "id": 2,
        "error": {"code": 100, "message": "internal server error", "temporary": True},
    }
    assert session.receive(frame({"id": 3, "subscribe": {"channel": "chat:a"}})) == [
        Subscribe(3, "chat:a", "a", None)
    ]


def test_unsubscribe() -> None:
    session = connected()
    session.receive(frame({"id": 2, "subscribe": {"channel": "chat:a"}}))
    actions = session.receive(frame({"id": 3, "unsubscribe": {"channel": "chat:a"}}))
    assert actions[0] == Unsubscribe("chat:a", "a")
    assert writes(actions) == [{"id": 3, "unsubscribe": {}}]
    # Not subscribed: still a success, and nothing to leave.
    assert writes(session.receive(frame({"id": 4, "unsubscribe": {"channel": "chat:a"}}))) == [
        {"id": 4, "unsubscribe": {}}
    ]


def test_publish_flow() -> None:
    session = connected()
    data = {"channel": "chat:a", "data": {"text": "<img src=x onerror=alert(1)>", "amount": 5}}
    assert session.receive(frame({"id": 2, "publish": data})) == [
        Publish(2, "chat:a", "a", "<img src=x onerror=alert(1)>", 5)
    ]
    assert session.publishes_in_flight == 1
    assert json.loads(session.published(2, None)) == {"id": 2, "publish": {}}
    error = codes.chat_error("rate_limited", "at most 3 messages per 2 s")
    assert json.loads(session.published(3, error)) == {
        "id": 3,
        "error": {
            "code": 403,
            "message": "rate_limited: at most 3 messages per 2 s",
            "temporary": True,
        },
    }


def test_anonymous_publish_is_refused() -> None:
    session = connected(Identity())
    assert writes(
        session.receive(frame({"id": 2, "publish": {"channel": "chat:a", "data": {"text": "hi"}}}))
    ) == [{"id": 2, "error": {"code": 103, "message": "permission denied"}}]


@pytest.mark.parametrize(
    "data",
    [
        "hi",
        ["hi"],
        {"txt": "hi"},
        {"text": 5},
        {"text": "hi", "amount": "5"},
        {"text": "hi", "amount": -1},
        {"text": "hi", "html": "<b>"},
    ],
)
def test_publish_data_must_be_a_chat_message(data: Any) -> None:
    session = connected()
    assert writes(
        session.receive(frame({"id": 2, "publish": {"channel": "chat:a", "data": data}}))
    ) == [{"id": 2, "error": {"code": 107, "message": "bad request"}}]


def test_publish_without_data_disconnects() -> None:
    session = connected()
    assert closes(session.receive(frame({"id": 2, "publish": {"channel": "chat:a"}}))) == [3501]


def test_oversize_text_is_refused_with_a_reply() -> None:
    session = connected(config=SessionConfig(max_chars=500))
    text = "x" * 501
    assert writes(
        session.receive(frame({"id": 2, "publish": {"channel": "chat:a", "data": {"text": text}}}))
    ) == [{"id": 2, "error": {"code": 400, "message": "too_long: 501 characters, at most 500"}}]
    assert session.state is SessionState.CONNECTED


def test_publishes_in_flight_are_bounded() -> None:
    session = connected()
    command = {"channel": "chat:a", "data": {"text": "hi"}}
    for number in range(MAX_PUBLISHES_IN_FLIGHT):
        assert isinstance(
            session.receive(frame({"id": 10 + number, "publish": command}))[0], Publish
        )
    assert writes(session.receive(frame({"id": 99, "publish": command}))) == [
        {"id": 99, "error": {"code": 111, "message": "too many requests", "temporary": True}}
    ]


def test_history_and_presence_stats() -> None:
    session = connected()
    since = {"offset": 4, "epoch": "e"}
    assert session.receive(
        frame(
            {
                "id": 2,
                "history": {"channel": "chat:a", "limit": 1000, "since": since, "reverse": True},
            }
        )
    ) == [History(2, "chat:a", "a", 100, StreamPosition(offset=4, epoch="e"), True)]
    assert json.loads(session.history(2, HistoryResult(epoch="e", offset=4))) == {
        "id": 2,
        "history": {"epoch": "e", "offset": 4},
    }
    assert session.receive(frame({"id": 3, "presence_stats": {"channel": "chat:a"}})) == [
        PresenceStats(3, "chat:a", "a")
    ]


# --- pings -----------------------------------------------------------------------------------


def test_server_ping_pong_and_no_pong() -> None:
    session = connected(config=SessionConfig(ping_interval_s=25, pong_timeout_s=8))
    assert session.tick(10.0) == []
    assert session.tick(25.0) == [Write(b"{}")]
    assert session.receive("{}") == []  # the pong
    assert session.tick(49.0) == []
    assert session.tick(50.0) == [Write(b"{}")]
    assert session.tick(57.0) == []
    assert closes(session.tick(58.1)) == [3012]


def test_unsolicited_pong_disconnects() -> None:
    session = connected()
    assert closes(session.receive("{}")) == [3501]


def test_no_connect_in_time_is_stale() -> None:
    session = Session(client_id="c1", opened_at=100.0)
    assert session.tick(105.0) == []
    assert closes(session.tick(110.5)) == [3502]
