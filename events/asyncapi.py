"""The AsyncAPI document, generated from the components' real brokers.

Each component module in :data:`COMPONENT_BUS_MODULES` exposes
``create_broker(settings) -> NatsBroker`` with its subscribers and declared publishers
(:func:`events.declare.declare_publishes`) registered but not connected; FastStream
turns those into channels and operations. The catalog's schemas are added under
``components.schemas`` by event type, so the document describes every event even
before a component publishes or consumes it.

Plain msgspec Structs crash FastStream's generator (faststream issue #2101): it asks
pydantic for a schema of every handler parameter and publisher ``schema=``. Events
carry pydantic hooks (:class:`events.envelope.Event`) that answer with msgspec's own
JSON schema; any other Struct a handler takes (a request/reply query, say) gets the
same hooks lent for the duration of the generation (:func:`_structs_described`).
"""

from __future__ import annotations

import contextlib
import importlib
import json
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import msgspec
from faststream.nats import NatsBroker
from faststream.specification import AsyncAPI

from common.settings import Settings
from events.catalog import EVENT_TYPES
from events.envelope import json_schema_of

COMPONENT_BUS_MODULES: tuple[str, ...] = (
    "gateway.bus",
    "ingest.bus",
    "chat.bus",
    "uploader.bus",
    "transcoder.bus",
)
TITLE = "VideoPick events"
DESCRIPTION = (
    "Typed events on NATS JetStream. Subjects are `<type>.<key>`; every message carries "
    "`Nats-Msg-Id` = `event_id`. Channels are the components' durable consumers "
    "(`<durable>:<type>`) and declared publishers (`<component>:publishes:<type>`)."
)


def _app_version() -> str:
    try:
        return version("videopick")
    except PackageNotFoundError:  # running from a checkout that is not installed
        return "0.0.0"


def build_component_brokers(
    settings: Settings,
    modules: Sequence[str] = COMPONENT_BUS_MODULES,
    *,
    note: Callable[[str], None] = lambda _message: None,
) -> list[NatsBroker]:
    """Import each component's bus module and build its broker (not connected).

    A module that does not exist yet is skipped and ``note`` is told; any other
    import error (a bug in an existing module, a missing dependency) is raised.
    """
    brokers: list[NatsBroker] = []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # Only "this module (or its package) is absent" is a skip; a missing
            # import *inside* an existing module is a real error.
            if exc.name is None or not (name == exc.name or name.startswith(f"{exc.name}.")):
                raise
            note(f"{name}: not present, skipped")
            continue
        factory = getattr(module, "create_broker", None)
        if not callable(factory):
            raise TypeError(f"{name} has no create_broker(settings) -> NatsBroker")
        broker = factory(settings)
        if not isinstance(broker, NatsBroker):
            raise TypeError(f"{name}.create_broker returned {type(broker).__name__}")
        brokers.append(broker)
    return brokers


def build_asyncapi(brokers: Sequence[NatsBroker], *, title: str = TITLE) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``brokers`` plus the catalog's schemas, as JSON data."""
    specification = AsyncAPI(title=title, version=_app_version(), description=DESCRIPTION)
    for broker in brokers:
        specification.add_broker(broker)
    # The factory directly, not FastStream(*brokers, specification=…): the app would
    # rebind each broker's dependency config, and a serving gateway may pass its own.
    with _structs_described():
        document: dict[str, Any] = json.loads(specification.to_specification().to_json())
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    for event_type in EVENT_TYPES:
        schemas.setdefault(event_type.event_type(), json_schema_of(event_type))
    return document


def _struct_core_schema(cls: type[msgspec.Struct], _source: Any, _handler: Any) -> Any:
    from pydantic_core import core_schema

    return core_schema.no_info_plain_validator_function(
        lambda value: value if isinstance(value, cls) else msgspec.convert(value, cls)
    )


def _struct_json_schema(cls: type[msgspec.Struct], _core: Any, _handler: Any) -> dict[str, Any]:
    return json_schema_of(cls)


@contextlib.contextmanager
def _structs_described() -> Iterator[None]:
    """Lend every msgspec Struct the pydantic hooks events have, then take them back.

    Scoped, not a permanent patch of msgspec.Struct: nothing outside document
    generation should see pydantic treat Structs differently.
    """
    hooks = {
        "__get_pydantic_core_schema__": classmethod(_struct_core_schema),
        "__get_pydantic_json_schema__": classmethod(_struct_json_schema),
    }
    lent = [name for name in hooks if name not in vars(msgspec.Struct)]
    for name in lent:
        setattr(msgspec.Struct, name, hooks[name])
    try:
        yield
    finally:
        for name in lent:
            delattr(msgspec.Struct, name)


def write_asyncapi(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=False, default=str) + "\n"
