"""The public HTTP API as ``videopick demo`` uses it: account, stream key, catalog, uploads.

Only documented routes (DESIGN.md, "Public interface"); every failure becomes a
:class:`DemoError` whose message is one line a newcomer can act on.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any, Final

import httpx

__all__ = ["DemoAPI", "DemoError", "StreamKey"]

TIMEOUT_S: Final = 15.0


class DemoError(Exception):
    """Ends the demo; ``str()`` is the one line printed."""


@dataclass(frozen=True, slots=True)
class StreamKey:
    stream_key: str
    stream_id: str
    rtmp_url: str


class DemoAPI:
    """A thin async client; ``async with DemoAPI(url) as api``."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=TIMEOUT_S)
        self.token = ""
        self.started = time.monotonic()

    async def __aenter__(self) -> DemoAPI:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._http.aclose()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def since_start(self) -> str:
        """How long since the demo began, for the milestones it prints."""
        return f"after {time.monotonic() - self.started:.1f} s"

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, headers=self.headers, **kwargs)
        except httpx.ConnectError as exc:
            raise DemoError(
                f"cannot reach the gateway at {self.base_url} ({_reason(exc)}); "
                "start the platform first: make run (videopick up)"
            ) from None
        except httpx.TimeoutException:
            raise DemoError(
                f"the gateway at {self.base_url} did not answer {method} {path}"
            ) from None
        except httpx.HTTPError as exc:
            raise DemoError(f"{method} {self.base_url}{path} failed: {exc}") from None

    async def _json(self, method: str, path: str, *, ok: tuple[int, ...], **kwargs: Any) -> Any:
        response = await self._request(method, path, **kwargs)
        if response.status_code not in ok:
            raise DemoError(f"{method} {path}: {_problem(response)}")
        return response.json()

    async def sign_in(self, username: str, email: str, password: str) -> bool:
        """Log in, registering the account first if it does not exist; True if created."""
        login = {"login": username, "password": password}
        response = await self._request("POST", "/api/v2/auth/login", json=login)
        created = False
        if response.status_code == 401:
            account = {"username": username, "email": email, "password": password}
            registered = await self._request("POST", "/api/v2/auth/register", json=account)
            if registered.status_code == 409:
                raise DemoError(
                    f"the account {username!r} exists with another password "
                    "(the demo logs in with its own; delete the data folder for a fresh start)"
                )
            if registered.status_code != 201:
                raise DemoError(f"register {username!r}: {_problem(registered)}")
            created = True
            response = await self._request("POST", "/api/v2/auth/login", json=login)
        if response.status_code != 200:
            raise DemoError(f"log in as {username!r}: {_problem(response)}")
        self.token = str(response.json()["access_token"])
        return created

    async def stream_key(self) -> StreamKey:
        body = await self._json("GET", "/api/v2/streams/key", ok=(200,))
        return StreamKey(str(body["stream_key"]), str(body["stream_id"]), str(body["rtmp_url"]))

    async def start(self, title: str, description: str) -> None:
        payload = {"title": title, "description": description}
        await self._json("POST", "/api/v2/streams/start", ok=(200,), json=payload)

    async def stop(self) -> None:
        await self._json("POST", "/api/v2/streams/stop", ok=(202,))

    async def channel(self, stream_id: str) -> dict[str, Any]:
        body: dict[str, Any] = await self._json("GET", f"/api/v2/streams/{stream_id}", ok=(200,))
        return body

    async def upload_status(self, upload_id: str) -> dict[str, Any]:
        body: dict[str, Any] = await self._json("GET", f"/api/v2/upload/{upload_id}", ok=(200,))
        return body

    async def video(self, video_id: str) -> dict[str, Any] | None:
        """The catalog's view of a video; None until the projection has it."""
        response = await self._request("GET", f"/api/v2/videos/{video_id}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise DemoError(f"GET /api/v2/videos/{video_id}: {_problem(response)}")
        body: dict[str, Any] = response.json()
        return body


def _reason(exc: BaseException) -> str:
    """The socket error under httpx's wrapping: "connection refused", "unknown host"…"""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, socket.gaierror):
            return "unknown host"
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror.lower()
        seen = seen.__cause__ or seen.__context__
    return str(exc) or type(exc).__name__


def _problem(response: httpx.Response) -> str:
    """``detail`` of an application/problem+json answer, else the status line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return f"{response.status_code} {body['detail']}"
    return f"{response.status_code} {response.reason_phrase}"
