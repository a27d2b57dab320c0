"""Render a session's LL-HLS media playlist (RFC 8216bis, draft 16+; Apple LL-HLS).

A pure function of :class:`~gateway.live.state.SessionPlaylist`. What it writes, and why:

- ``EXT-X-VERSION:9`` — fMP4 with EXT-X-MAP needs 6 (§8), LL-HLS clients expect 9.
- ``EXT-X-TARGETDURATION`` — fixed for the session; every EXTINF rounds to ≤ it
  (§4.4.3.1, the packager guarantees it).
- ``EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=…`` — blocking reload is
  offered (§4.4.3.8, §6.2.5.2); PART-HOLD-BACK is three part targets (§4.4.3.8: MUST be
  ≥ 2x, SHOULD be ≥ 3x). HOLD-BACK is left at its default, three target durations.
- ``EXT-X-PART-INF:PART-TARGET`` — required with EXT-X-PART (§4.4.3.7).
- ``EXT-X-MAP`` — the init segment (§4.4.4.5).
- ``EXT-X-PROGRAM-DATE-TIME`` before every segment, so before its first EXT-X-PART
  (§4.4.4.9), wall clock of its first frame (§4.4.4.6).
- ``EXT-X-PART`` only for segments ending in the last three target durations (§6.2.2:
  parts SHOULD be removed beyond that), ``INDEPENDENT=YES`` when a part starts with a
  keyframe (§4.4.4.9). Older segments are listed normally, so a player without LL-HLS
  support plays the same playlist.
- A segment that never reached the store is kept in sequence as ``EXT-X-GAP``
  (§4.4.4.7), its duration taken from its neighbours' program date-times.
- ``EXT-X-PRELOAD-HINT:TYPE=PART`` for the next part while live (§4.4.5.3, §6.2.6);
  never together with ``EXT-X-ENDLIST`` (§4.4.5.3), which closes an ended broadcast
  (§6.2.1). An ended broadcast lists no parts: its segments say it all, and ingest
  deletes the part objects soon after.
- ``EXT-X-DISCONTINUITY`` before the first segment (and its parts) after the
  publisher reconnected (§4.4.4.3: a new encoder, its timestamps and parameters may
  change); ``EXT-X-DISCONTINUITY-SEQUENCE`` counts those that left the window
  (§4.4.3.3).
"""

from __future__ import annotations

from datetime import datetime

from gateway.live import keys
from gateway.live.state import Part, SessionPlaylist

PLAYLIST_VERSION = 9
PART_HOLD_BACK_PARTS = 3  # x PART-TARGET (§4.4.3.8 SHOULD)
PART_WINDOW_TARGETS = 3  # parts listed for the last 3 target durations (§6.2.2)


def _duration(value: float) -> str:
    return f"{value:.5f}"


def _pdt_seconds(value: str) -> float | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _gap_duration(session: SessionPlaylist, sequence: int) -> float:
    """A missing segment lasted from its predecessor's end to its successor's start."""
    before, after = session.segments.get(sequence - 1), session.segments.get(sequence + 1)
    if before and after:
        start, end = _pdt_seconds(before.program_date_time), _pdt_seconds(after.program_date_time)
        if start is not None and end is not None and end - start > before.duration_s:
            return end - start - before.duration_s
    parts = session.listed_parts(sequence)
    return sum(p.duration_s for p in parts) or float(session.target_duration)


def _part_line(part: Part) -> str:
    independent = ",INDEPENDENT=YES" if part.independent else ""
    return f'#EXT-X-PART:DURATION={_duration(part.duration_s)},URI="{part.uri}"{independent}'


def render(session: SessionPlaylist) -> str:
    last = session.last_sequence
    target = session.target_duration
    pending = [] if session.ended else session.listed_parts(last + 1)

    # (sequence, duration) of every listed segment, gaps included, oldest first.
    listed = [
        (seq, seg.duration_s if (seg := session.segments.get(seq)) else _gap_duration(session, seq))
        for seq in range(session.floor, last + 1)
    ]
    end_s = sum(d for _, d in listed) + sum(p.duration_s for p in pending)
    horizon_s = end_s - PART_WINDOW_TARGETS * target

    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{PLAYLIST_VERSION}",
        f"#EXT-X-TARGETDURATION:{target}",
        f"#EXT-X-MEDIA-SEQUENCE:{session.floor}",
    ]
    if session.discontinuities:  # a broadcast with no reconnect keeps the default, 0
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{session.discontinuity_sequence}")
    lines += [
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,"
        f"PART-HOLD-BACK={PART_HOLD_BACK_PARTS * session.part_target_s:.3f}",
        f"#EXT-X-PART-INF:PART-TARGET={session.part_target_s:.3f}",
        f'#EXT-X-MAP:URI="{session.init_uri}"',
    ]
    start_s = 0.0
    for seq, duration_s in listed:
        if seq in session.discontinuities:
            lines.append("#EXT-X-DISCONTINUITY")
        segment = session.segments.get(seq)
        if segment is None:
            lines += ["#EXT-X-GAP", f"#EXTINF:{_duration(duration_s)},"]
            lines.append(keys.segment_uri(session.session_id, seq))
            start_s += duration_s
            continue
        if segment.program_date_time:
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{segment.program_date_time}")
        parts = session.listed_parts(seq)
        listing = not session.ended and start_s + duration_s > horizon_s
        if listing and parts and len(parts) == segment.part_count:
            lines += [_part_line(part) for part in parts]
        lines += [f"#EXTINF:{_duration(duration_s)},", segment.uri]
        start_s += duration_s
    if pending and last + 1 in session.discontinuities:
        lines.append("#EXT-X-DISCONTINUITY")
    lines += [_part_line(part) for part in pending]
    if session.ended:
        lines.append("#EXT-X-ENDLIST")
    else:
        hint = keys.part_uri(session.session_id, last + 1, len(pending))
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{hint}"')
    return "\n".join(lines) + "\n"
