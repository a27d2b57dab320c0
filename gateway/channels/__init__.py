"""Channels: the public stream id, the secret stream key, broadcast control."""
