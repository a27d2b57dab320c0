"""Holding a checksummed chunk aside until its digest is known.

The checksum extension forbids appending a chunk whose digest differs, and S3 cannot
take back a part once uploaded (ListParts would count it). So a chunk that carries
``Upload-Checksum`` is received whole into a spool — memory up to ``memory_limit``,
then a private temporary file — hashed on the way, verified, and only then written to
the store. A PATCH with a checksum that is cut mid-way therefore leaves nothing behind
(RELIABILITY.md: "an interrupted PATCH that carried a checksum discards the partial
chunk").
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from types import TracebackType
from typing import IO, Self

from gateway.tus.checksum import Checksum

__all__ = ["Spool"]

READ_SIZE = 1024 * 1024


class Spool:
    def __init__(self, memory_limit: int) -> None:
        self._file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=memory_limit)  # noqa: SIM115
        self._memory_limit = memory_limit
        self.size = 0

    async def fill(self, body: AsyncIterator[bytes], checksum: Checksum) -> None:
        """Take the whole body; raises ChecksumMismatch, or BodyInterrupted from ``body``."""
        hasher = checksum.hasher()
        async for chunk in body:
            hasher.update(chunk)
            if self.size + len(chunk) > self._memory_limit:
                await asyncio.to_thread(self._file.write, chunk)  # on disk by now
            else:
                self._file.write(chunk)
            self.size += len(chunk)
        checksum.verify(hasher)

    async def chunks(self) -> AsyncIterator[bytes]:
        await asyncio.to_thread(self._file.seek, 0)
        while chunk := await asyncio.to_thread(self._file.read, READ_SIZE):
            yield chunk

    def close(self) -> None:
        self._file.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.close)
