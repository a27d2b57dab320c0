"""Which page origins may open the chat WebSocket."""

from __future__ import annotations

import pytest

from common.settings import load_settings
from gateway.centrifuge.origin import chat_origins, origin_allowed

pytestmark = pytest.mark.unit


def test_a_loopback_gateway_accepts_its_other_loopback_spellings() -> None:
    allowed = chat_origins(load_settings({}))
    for origin in ("http://localhost:8080", "http://127.0.0.1:8080", "http://[::1]:8080"):
        assert origin_allowed(origin, allowed)
    assert not origin_allowed("http://127.0.0.1:8081", allowed)
    assert not origin_allowed("https://localhost:8080", allowed)


def test_the_public_url_follows_the_port_unless_set() -> None:
    assert load_settings({"VIDEOPICK_HTTP_PORT": "9090"}).public_url == "http://localhost:9090"
    allowed = chat_origins(load_settings({"VIDEOPICK_HTTP_PORT": "9090"}))
    assert origin_allowed("http://127.0.0.1:9090", allowed)
    assert not origin_allowed("http://127.0.0.1:8080", allowed)
    explicit = load_settings(
        {"VIDEOPICK_HTTP_PORT": "9090", "VIDEOPICK_PUBLIC_URL": "https://video.example.com"}
    )
    assert explicit.public_url == "https://video.example.com"


def test_a_public_gateway_gets_no_loopback_aliases() -> None:
    allowed = chat_origins(load_settings({"VIDEOPICK_PUBLIC_URL": "https://video.example.com/"}))
    assert allowed == {"https://video.example.com"}
    assert not origin_allowed("http://localhost", allowed)
    assert not origin_allowed("null", allowed)
