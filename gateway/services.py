"""What request handlers use, built once per process by the app's lifespan.

Handlers receive it as the ``services`` dependency (``gateway.app``); a gateway feature
that needs more (gateway B's projections) adds its own object to ``app.state`` from
its own lifespan hook rather than growing this one.
"""

from __future__ import annotations

from dataclasses import dataclass

from faststream.nats import NatsBroker
from litestar.datastructures import State
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from common.settings import Settings
from events.publisher import EventPublisher
from gateway.auth.limiter import RateLimiter
from gateway.auth.tokens import TokenService
from gateway.channels.keys import KeyBox
from gateway.errors import UnavailableError


@dataclass(frozen=True)
class Services:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    broker: NatsBroker
    publisher: EventPublisher
    tokens: TokenService
    key_box: KeyBox
    login_limiter: RateLimiter


# Handler parameter type: `services: ServicesDep` (litestar 2.25 wants explicit markers).
ServicesDep = NamedDependency[Services]


def provide_services(state: State) -> Services:
    services = state.get("services")
    if not isinstance(services, Services):
        raise UnavailableError("the gateway is starting or stopping")
    return services
