"""Live chat at the edge: the Centrifugo client protocol (JSON) over WebSocket.

Layers, inside out:

- ``codes``     — reply error and disconnect codes (centrifuge's), our chat range;
- ``protocol``  — the wire format (commands, replies, pushes; ``\\n`` batches);
- ``session``   — one connection's state machine, sans I/O;
- ``channels``  — ``chat:{stream_id}`` and the publication data built from events;
- ``sequencer`` — a channel's offsets in order, each once (pure);
- ``outbox``    — one socket's bounded queue (slow readers are dropped);
- ``history``   — the chat component's history over NATS request/reply;
- ``hub``       — rooms: the per-process fan-out on raw NATS subscriptions;
- ``service``   — ``ChatGateway``: NATS connection, hub, ``chat.message`` publishing;
- ``origin``    — which pages may open the socket;
- ``endpoint``  — the ASGI WebSocket handler (Origin check, reader/writer/ticker);
- ``wiring``    — the lifespan hook for ``gateway/app.py``.
"""

from gateway.centrifuge.endpoint import PATH, centrifugo_websocket
from gateway.centrifuge.service import ChatGateway, TokenRefused

__all__ = ["PATH", "ChatGateway", "TokenRefused", "centrifugo_websocket"]
