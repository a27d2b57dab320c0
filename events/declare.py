"""Documented publishers: what a component publishes, for the AsyncAPI document.

FastStream documents a subscriber from its handler, but a component publishes through
:class:`events.publisher.EventPublisher`, which FastStream cannot see. Each component
therefore declares next to its subscribers what it publishes::

    broker = create_broker(settings, name="uploader")
    declare_publishes(broker, UploadCompleted, UploadRejected, TranscodeRequested)

This registers one ``broker.publisher(...)`` per event type, never called: the
publisher objects exist only to be listed. Streams are bound with ``declare=False``
(``videopick events init`` owns them; a declared stream would overwrite operator
limits at ``broker.start()``, NOTES.md).
"""

from __future__ import annotations

from faststream.nats import JStream, NatsBroker
from faststream.nats.publisher.usecase import LogicPublisher

from events.envelope import Event
from events.streams import stream_for_subject

BROKER_NAME_PREFIX = "videopick-"  # events.broker.create_broker names connections so


def publisher_title(component: str, event_type: type[Event]) -> str:
    """The AsyncAPI channel name; subscribers use ``<durable>:<type>``, so no clash."""
    return f"{component}:publishes:{event_type.event_type()}"


def component_of(broker: NatsBroker) -> str:
    """The component a broker from ``create_broker(settings, name=…)`` belongs to."""
    # FastStream keeps the connection options privately; the name is only a label.
    name = str(getattr(broker, "_connection_kwargs", {}).get("name") or "")
    return name.removeprefix(BROKER_NAME_PREFIX) or "unnamed"


def declare_publishes(
    broker: NatsBroker, *event_types: type[Event], component: str | None = None
) -> list[LogicPublisher]:
    """Register a documented publisher for each event type on its existing stream."""
    component = component or component_of(broker)
    publishers: list[LogicPublisher] = []
    for event_type in event_types:
        subject = event_type.subject_filter()  # <type>.* : one subject per entity key
        stream = stream_for_subject(f"{event_type.event_type()}.key")
        publishers.append(
            broker.publisher(
                subject,
                stream=JStream(stream.name, declare=False),
                schema=event_type,
                title=publisher_title(component, event_type),
                description=(event_type.__doc__ or "").strip() or None,
            )
        )
    return publishers
