"""The envelope every event carries, and the registry of event types.

An event is a msgspec Struct tagged with its type name (``stream.started``); the
envelope fields come first and are shared by all. The subject an event is published
on is ``<type>.<key>``, where ``key`` is the value of the field the event class names
in ``key_field`` (``stream_id``, ``upload_id``…), so consumers can filter per entity.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import msgspec
import uuid_utils

SCHEMA_VERSION = 1


def new_event_id() -> str:
    """UUIDv7: time-ordered, so ids sort like the log and index well."""
    return str(uuid_utils.uuid7())


def utc_now() -> datetime:
    return datetime.now(UTC)


class Event(msgspec.Struct, kw_only=True, frozen=True, tag_field="type"):
    """Base of every event. ``event_id`` doubles as the ``Nats-Msg-Id`` header."""

    event_id: str = msgspec.field(default_factory=new_event_id)
    occurred_at: datetime = msgspec.field(default_factory=utc_now)
    producer: str = ""
    version: int = SCHEMA_VERSION
    correlation_id: str = ""

    # The field whose value ends the subject; every event names one.
    key_field: ClassVar[str] = ""

    @classmethod
    def event_type(cls) -> str:
        tag = cls.__struct_config__.tag
        assert isinstance(tag, str), f"{cls.__name__} has no tag"
        return tag

    @classmethod
    def subject_filter(cls) -> str:
        """The wildcard subject that matches every event of this type."""
        return f"{cls.event_type()}.*"

    def subject(self) -> str:
        key = str(getattr(self, self.key_field))
        if not key or any(ch in key for ch in ".*> \t\r\n"):
            raise ValueError(
                f"{self.event_type()}: {self.key_field}={key!r} is not a subject token"
            )
        return f"{self.event_type()}.{key}"

    def with_envelope(self, **changes: Any) -> Event:
        return msgspec.structs.replace(self, **changes)

    # AsyncAPI generation goes through pydantic; describe Structs with msgspec's own
    # JSON schema instead of letting pydantic fail on them (faststream issue #2101).
    @classmethod
    def __get_pydantic_core_schema__(cls, _source: Any, _handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(
            lambda value: value if isinstance(value, cls) else msgspec.convert(value, cls)
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, _core_schema: Any, _handler: Any) -> dict[str, Any]:
        return json_schema_of(cls)


def json_schema_of(cls: type[msgspec.Struct]) -> dict[str, Any]:
    """msgspec's schema for one Struct (an event or not) with ``$defs`` inlined."""
    schema = msgspec.json.schema(cls)
    defs: dict[str, Any] = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved
