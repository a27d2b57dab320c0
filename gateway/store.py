"""The gateway's object store: opened once per process, shared by the features.

``store_lifespan`` (first of the app's hooks) puts it on ``app.state.store``. Features
take it through :func:`app_store`, which falls back to a store of their own when they
run in an app without that hook (their tests build such apps).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar

from common.settings import Settings
from common.store import ObjectStore, create_store

STATE_KEY = "store"


@asynccontextmanager
async def app_store(app: Litestar, settings: Settings) -> AsyncIterator[ObjectStore]:
    shared = app.state.get(STATE_KEY)
    if isinstance(shared, ObjectStore):
        yield shared
        return
    store = create_store(settings)
    await store.ensure_ready()
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def store_lifespan(app: Litestar) -> AsyncIterator[None]:
    async with app_store(app, app.state.settings) as store:
        app.state[STATE_KEY] = store
        try:
            yield
        finally:
            app.state[STATE_KEY] = None
