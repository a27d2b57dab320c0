"""Live chat at the edge: the Centrifugo client protocol (JSON) over WebSocket.

Layers, inside out:

- ``protocol``  — the wire format (commands, replies, pushes; ``\\n`` batches);
- ``session``   — one connection's state machine, sans I/O;
- ``sequencer`` — a channel's offsets in order, each once (pure);
- ``hub``       — rooms: the per-process fan-out on raw NATS subscriptions;
- ``service``   — ``ChatGateway``: NATS connection, hub, ``chat.message`` publishing;
- ``endpoint``  — the ASGI WebSocket handler (Origin check, reader/writer/ticker);
- ``wiring``    — the lifespan hook and route for ``gateway/app.py``.
"""

from gateway.centrifuge.endpoint import PATH, centrifugo_websocket
from gateway.centrifuge.service import ChatGateway, TokenRefused

__all__ = ["PATH", "ChatGateway", "TokenRefused", "centrifugo_websocket"]
