"""Which demuxer may open an upload, decided from its first bytes, never by FFmpeg.

FFmpeg's own format probing is what hostile files abuse: a ``.mp4`` that is really an
HLS playlist makes FFmpeg follow ``file:///etc/passwd`` or a metadata-service URL; a
``concat:`` or ``subfile:`` list reads other files. So the container is recognised
here by its magic numbers, from a short whitelist, and the probe then *forces* that
demuxer (and allows no other one, nested demuxers included). Anything else — text,
playlists, images, archives — is not a video we accept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["HEAD_BYTES", "Container", "sniff"]

# Enough for every check below (MPEG-TS needs three 188-byte packets).
HEAD_BYTES: Final = 4096
_TS_PACKET: Final = 188
# ISO BMFF files start with ftyp; very old QuickTime files with one of these.
_QT_FIRST_BOXES: Final = (b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot")


@dataclass(frozen=True, slots=True)
class Container:
    name: str  # what MediaProbe.container reports
    demuxer: str  # the FFmpeg demuxer forced open (av.open format=)
    # FFmpeg's format_whitelist: the demuxer's full name list, and nothing else, so a
    # nested open (AVI's GAB2 subtitles probing HLS inside) is refused too.
    whitelist: str

    @property
    def iso_bmff(self) -> bool:
        return self.demuxer == "mov"


_MOV = "mov,mp4,m4a,3gp,3g2,mj2"
_MKV = "matroska,webm"


def _iso_bmff(head: bytes) -> Container | None:
    if len(head) < 12:
        return None
    kind = head[4:8]
    if kind == b"ftyp":
        brand = head[8:12]
        return Container("mov" if brand == b"qt  " else "mp4", "mov", _MOV)
    if kind in _QT_FIRST_BOXES:
        return Container("mov", "mov", _MOV)
    return None


def _matroska(head: bytes) -> Container | None:
    if not head.startswith(b"\x1a\x45\xdf\xa3"):
        return None
    # The EBML header's DocType says which flavour; a short scan is enough.
    name = "webm" if b"webm" in head[:64] else "matroska"
    return Container(name, "matroska", _MKV)


def _mpegts(head: bytes) -> Container | None:
    if len(head) < 3 * _TS_PACKET:
        return None
    if all(head[i * _TS_PACKET] == 0x47 for i in range(3)):
        return Container("mpegts", "mpegts", "mpegts")
    return None


def sniff(head: bytes) -> Container | None:
    """The container of a file starting with ``head``, or None (not a video we take)."""
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return Container("avi", "avi", "avi")
    if head.startswith(b"FLV\x01"):
        return Container("flv", "flv", "flv")
    return _iso_bmff(head) or _matroska(head) or _mpegts(head)
