"""One transcode job, start to finish, in the child process.

Order matters for readers of the store: every segment before the media playlists,
the sprite, and the master playlist last. A master playlist in the store means the
whole video is there. Poster and thumbnails (a second, keyframe-only decode) run on
their own thread beside the ladder: done serially first they left one core idle
while the ladder waited; beside it they land long before the first segment does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from common.logs import get_logger
from common.store import ObjectNotFound
from events.catalog import Rendition
from transcoder.errors import PoisonInputError
from transcoder.ladder import Rung, parse_ladder, select_rungs
from transcoder.layout import (
    MASTER_NAME,
    MEDIA_PLAYLIST_NAME,
    POSTER_NAME,
    SPRITE_NAME,
    SPRITE_VTT_NAME,
    content_type_for,
    thumbnail_name,
    video_prefix,
)
from transcoder.pipeline import LadderStats, encode_ladder
from transcoder.playlists import (
    AAC_LC,
    Variant,
    avc_codec_string,
    measure_bandwidth,
    parse_media_playlist,
    render_master,
)
from transcoder.protocol import JobSpec, Progress, Result
from transcoder.rendition import EncoderSettings
from transcoder.source import SourceInfo, open_source, probe
from transcoder.storeio import StoreBridge, StoreReader, Uploads
from transcoder.thumbnails import (
    SpriteSheet,
    encode_jpeg,
    grab_keyframes,
    poster_time,
    thumbnail_times,
)

__all__ = ["CRF", "run_job"]

log = get_logger(__name__)

# Capped CRF: constant quality, with the rung's maxrate/bufsize as the VBV ceiling.
CRF = 23
THUMBNAIL_WIDTH = 320
# A poster no larger than the top rendition, and no larger than 1280 px wide.
POSTER_MAX_WIDTH = 1280
PROGRESS_EVERY_S = 0.5

Emit = Callable[[Progress], None]


@dataclass
class _Reporter:
    emit: Emit
    duration_s: float
    started: float
    last: float = 0.0

    def __call__(self, stage: str, position_s: float, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        self.emit(
            Progress(
                stage=stage,
                position_s=position_s,
                duration_s=self.duration_s,
                elapsed_s=now - self.started,
            )
        )


def run_job(spec: JobSpec, emit: Emit, bridge: StoreBridge | None = None) -> Result:
    """Transcode ``spec.source_key`` into ``vod/{video_id}/``; raises JobError kinds."""
    settings = spec.settings
    prefix = video_prefix(spec.video_id)
    own_bridge = bridge is None
    bridge = bridge or StoreBridge(settings)
    marks = {"start": time.monotonic()}
    try:
        info = _probe(bridge, spec)
        marks["probe"] = time.monotonic()
        width, height = info.display_size
        rungs = select_rungs(
            width,
            height,
            parse_ladder(settings.transcode_ladder),
            sample_aspect_ratio=info.sample_aspect_ratio if info.rotation == 0 else 1.0,
            fps=float(info.fps),
        )
        report = _Reporter(emit, info.duration_s, time.monotonic())
        uploads = Uploads(bridge)
        report("thumbnails", 0.0, force=True)
        sprite = SpriteSheet.for_video(
            rungs[0].width,
            rungs[0].height,
            info.duration_s,
            tile_width=settings.transcode_sprite_tile_width,
        )
        with ThreadPoolExecutor(1, thread_name_prefix="stills") as pool:
            stills = pool.submit(
                _stills,
                bridge=bridge,
                spec=spec,
                info=info,
                top=rungs[0],
                uploads=uploads,
                prefix=prefix,
            )
            stills.add_done_callback(lambda _: marks.__setitem__("stills", time.monotonic()))

            def encoding(position: float) -> None:
                _raise_if_failed(stills)  # a source without a poster stops the ladder early
                report("encoding", position)

            with StoreReader(bridge, spec.source_key) as reader, open_source(reader) as container:
                stats = encode_ladder(
                    container,
                    info,
                    rungs,
                    uploads=uploads,
                    key_prefix=prefix,
                    encoder_settings=EncoderSettings(
                        preset=settings.transcode_preset,
                        crf=CRF,
                        keyframe_s=settings.transcode_keyframe_s,
                        segment_s=settings.transcode_segment_s,
                    ),
                    audio_kbps=settings.transcode_audio_kbps,
                    sprite=sprite,
                    progress=encoding,
                )
            marks["ladder"] = time.monotonic()
            poster_key, thumbnail_keys = stills.result()
        duration = stats.duration_s or info.duration_s
        report("uploading", duration, force=True)
        uploads.wait()  # every segment is stored before a playlist names it
        renditions, variants = _media_playlists(stats, info, uploads)
        sprite_key = prefix + SPRITE_NAME
        vtt_key = prefix + SPRITE_VTT_NAME
        uploads.put(sprite_key, sprite.render(), content_type_for(SPRITE_NAME))
        uploads.put(vtt_key, sprite.vtt(SPRITE_NAME, duration).encode(), "text/vtt")
        uploads.wait()
        master_key = prefix + MASTER_NAME
        uploads.put(master_key, render_master(variants).encode(), content_type_for(MASTER_NAME))
        uploads.wait()
        marks["end"] = time.monotonic()
        _log_stages(spec.video_id, marks)
        top = rungs[0]
        return Result(
            master_key=master_key,
            renditions=renditions,
            poster_key=poster_key,
            thumbnail_keys=thumbnail_keys,
            sprite_key=sprite_key,
            sprite_vtt_key=vtt_key,
            duration_s=round(duration, 3),
            width=top.width,
            height=top.height,
        )
    finally:
        if own_bridge:
            bridge.close()


def _probe(bridge: StoreBridge, spec: JobSpec) -> SourceInfo:
    try:
        reader = StoreReader(bridge, spec.source_key)
    except ObjectNotFound as exc:
        raise PoisonInputError(f"the source {spec.source_key!r} does not exist") from exc
    with reader, open_source(reader) as container:
        return probe(
            container,
            duration_hint_s=spec.duration_hint_s,
            max_duration_s=spec.settings.transcode_max_duration_s,
        )


def _log_stages(video_id: str, marks: dict[str, float]) -> None:
    """Where a job's wall time went; the ladder bench reads these against ffmpeg's."""
    log.info(
        "job stages",
        video_id=video_id,
        probe_s=round(marks["probe"] - marks["start"], 3),
        stills_s=round(marks["stills"] - marks["probe"], 3),  # beside the ladder
        ladder_s=round(marks["ladder"] - marks["probe"], 3),
        finish_s=round(marks["end"] - marks["ladder"], 3),
        total_s=round(marks["end"] - marks["start"], 3),
    )


def _raise_if_failed(future: Future[Any]) -> None:
    if future.done() and (error := future.exception()) is not None:
        raise error


def _stills(
    *,
    bridge: StoreBridge,
    spec: JobSpec,
    info: SourceInfo,
    top: Rung,
    uploads: Uploads,
    prefix: str,
) -> tuple[str, list[str]]:
    """Poster (at ~10 %) and evenly spread thumbnails, all from keyframes."""
    count = max(0, spec.settings.transcode_thumbnails)
    times = [poster_time(info.duration_s), *thumbnail_times(info.duration_s, count)]
    poster_width = min(top.width, POSTER_MAX_WIDTH)
    with StoreReader(bridge, spec.source_key) as reader, open_source(reader) as container:
        posters = grab_keyframes(container, times[:1], width=poster_width, rotation=info.rotation)
        thumbs = grab_keyframes(container, times[1:], width=THUMBNAIL_WIDTH, rotation=info.rotation)
    if not posters:
        raise PoisonInputError("no keyframe could be decoded for the poster")
    poster_key = prefix + POSTER_NAME
    uploads.put(poster_key, encode_jpeg(posters[0]), "image/jpeg")
    keys: list[str] = []
    for index, image in enumerate(thumbs):
        key = prefix + thumbnail_name(index)
        uploads.put(key, encode_jpeg(image), "image/jpeg")
        keys.append(key)
    return poster_key, keys


def _media_playlists(
    stats: LadderStats, info: SourceInfo, uploads: Uploads
) -> tuple[list[Rendition], list[Variant]]:
    renditions: list[Rendition] = []
    variants: list[Variant] = []
    for output in stats.outputs:
        files = output.files
        if files.playlist is None:
            raise RuntimeError(f"rendition {output.rung.name} wrote no playlist")
        segments = parse_media_playlist(files.playlist)
        peak, average = measure_bandwidth(segments, files.sizes)
        codecs = avc_codec_string(output.video_extradata)
        if info.has_audio:
            codecs += f",{AAC_LC}"
        playlist_key = f"{files.key_prefix}{MEDIA_PLAYLIST_NAME}"
        uploads.put(playlist_key, files.playlist.encode(), content_type_for(MEDIA_PLAYLIST_NAME))
        rung = output.rung
        renditions.append(
            Rendition(
                name=rung.name,
                width=rung.width,
                height=rung.height,
                bandwidth=peak,
                average_bandwidth=average,
                codecs=codecs,
                playlist_key=playlist_key,
            )
        )
        variants.append(
            Variant(
                uri=f"{rung.name}/{MEDIA_PLAYLIST_NAME}",
                width=rung.width,
                height=rung.height,
                bandwidth=peak,
                average_bandwidth=average,
                codecs=codecs,
                frame_rate=float(info.fps),
            )
        )
    return renditions, variants
