"""One settings object, read from ``VIDEOPICK_*`` environment variables (12-factor).

Every component calls :func:`get_settings`; nothing else reads the environment.
Defaults are the embedded ones ``make run`` uses: a SQLite file, a local media
folder and a NATS server the supervisor starts itself.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import msgspec

ENV_PREFIX = "VIDEOPICK_"
DEV_JWT_SECRET = "dev-only-secret-change-me-0123456789abcdef"  # noqa: S105 - refused outside dev


class SettingsError(ValueError):
    """A ``VIDEOPICK_*`` variable has a value we cannot use."""


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    # Where the platform keeps its embedded state (SQLite file, media, NATS data).
    data_dir: Path = Path("data")
    env: str = "dev"  # "dev" allows the built-in JWT secret; anything else refuses it
    # Which replica this process is ("ingest-0"); the supervisor sets it for each child.
    instance: str = ""
    # Processes per component under `videopick up` / `cluster` ("gateway=2,transcoder=2");
    # the supervisor reads it, and its children inherit it.
    processes: str = ""

    # NATS: empty means "the supervisor starts one" (make run).
    nats_url: str = ""
    nats_port: int = 4222
    # JetStream replicas for the streams `events init` creates (3 in the cluster shape).
    nats_replicas: int = 1
    events_max_age_days: float = 30.0
    events_max_bytes: int = 512 * 1024**2  # per stream; events are small, media lives in the store
    events_duplicate_window_s: float = 120.0

    # Database: empty means the embedded SQLite file under data_dir.
    database_url: str = ""

    # Object store: "local" (folder under data_dir) or "s3" (MinIO or any S3).
    store_backend: str = "local"
    store_path: Path | None = None
    s3_endpoint: str = "127.0.0.1:9000"
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_bucket: str = "videopick"
    s3_region: str = "us-east-1"
    s3_secure: bool = False

    # Prometheus /metrics for non-HTTP components (chat, uploader, transcoder, ingest);
    # 0 = off. The gateway serves its own on http_port.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0

    # Gateway
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    public_url: str = "http://localhost:8080"
    rtmp_public_url: str = "rtmp://localhost:1935/live"
    cors_origins: tuple[str, ...] = ()
    jwt_secret: str = DEV_JWT_SECRET
    jwt_algorithm: str = "HS256"
    jwt_issuer: str = "videopick"
    jwt_audience: str = "videopick"
    jwt_ttl_s: int = 24 * 3600
    # Asymmetric signing (jwt_algorithm EdDSA or RS256): PEM files named `<kid>.pem`
    # (private, PKCS#8) or `<kid>.pub.pem` (verify only) in jwt_keys_dir; the active kid
    # signs; `kid@ISO-8601` entries in jwt_retired_kids say when a key stopped signing,
    # and it still verifies for jwt_overlap_s after that (gateway/auth/keys.py).
    jwt_keys_dir: Path | None = None
    jwt_active_kid: str = ""
    jwt_retired_kids: tuple[str, ...] = ()
    jwt_overlap_s: int = 24 * 3600
    # Encrypts stream keys at rest so their owner can see them again; empty derives it
    # from jwt_secret (gateway/channels/keys.py).
    stream_key_secret: str = ""
    # Login attempts per account and per client address (PeerTube: 15 per 5 min).
    login_limit_attempts: int = 15
    login_limit_window_s: int = 300
    # JSON API bodies; tus uploads have their own limits.
    http_max_body_bytes: int = 1024**2
    # Proxies whose X-Forwarded-For is believed (uvicorn's forwarded_allow_ips).
    http_trusted_proxies: tuple[str, ...] = ("127.0.0.1",)

    # Chat (chat/, gateway/centrifuge/). A token bucket per user and channel: a burst
    # of chat_rate_burst messages, refilled at chat_rate_per_s (Owncast hard-codes
    # 3 per 2 s; streamers change theirs with /ratelimit).
    chat_max_chars: int = 500
    chat_rate_burst: int = 3
    chat_rate_per_s: float = 1.5
    chat_history_size: int = 50
    # A WebSocket frame above this closes the connection (1009); uvicorn's ws_max_size
    # should be the same so a bigger one is never buffered.
    chat_ws_max_frame_bytes: int = 64 * 1024
    # What one connection may have queued for it before it is dropped as slow (3008).
    chat_ws_queue_max_bytes: int = 1024**2
    # Server pings (Centrifugo's defaults): an empty message every interval; no pong
    # within the timeout closes the connection (3012).
    chat_ping_interval_s: float = 25.0
    chat_pong_timeout_s: float = 8.0
    # Users (ids) allowed to top up wallets outside env=dev.
    chat_admin_user_ids: tuple[str, ...] = ()
    # Log where a message's time goes in the chat worker (chat/stages.py; benchmarks).
    chat_stages: bool = False

    # Ingest
    rtmp_host: str = "127.0.0.1"
    rtmp_port: int = 1935
    # Time limits per RTMP connection (ingest/rtmp/server.py); byte limits are the
    # core's (ingest/rtmp/limits.py). Setup: from accept until publishing starts.
    rtmp_handshake_timeout_s: float = 10.0
    rtmp_setup_timeout_s: float = 30.0
    rtmp_idle_timeout_s: float = 30.0
    rtmp_max_connections: int = 1000
    rtmp_max_connections_per_host: int = 20
    # SO_REUSEPORT: several ingest processes share rtmp_port and the kernel spreads the
    # connections (one process is one core; a 2-core host runs two).
    rtmp_reuse_port: bool = False
    # Bad stream keys from one address: each refusal waits rtmp_bad_key_delay_s; after
    # rtmp_bad_key_limit of them within the window, that address is refused outright
    # for rtmp_bad_key_lockout_s.
    rtmp_bad_key_delay_s: float = 1.0
    rtmp_bad_key_limit: int = 5
    rtmp_bad_key_window_s: float = 60.0
    rtmp_bad_key_lockout_s: float = 300.0
    # After stream.stop_requested, the channel's publishes are refused this long (OBS
    # would otherwise reconnect at once).
    rtmp_stop_cooldown_s: float = 15.0
    # stats.ingest cadence; the one-publisher-per-channel lease is renewed with it and
    # lapses after rtmp_publisher_lease_s when an ingest process dies.
    rtmp_stats_interval_s: float = 5.0
    rtmp_publisher_lease_s: float = 15.0

    # Live packaging (ingest/packager) and LL-HLS delivery (gateway/live).
    # Parts never exceed live_part_target_s; the declared PART-TARGET is snapped down to
    # whole frames. Segments end on the first keyframe after ~live_segment_target_s, and
    # never round above EXT-X-TARGETDURATION = live_target_duration_s (RFC 8216bis 4.4.3.1).
    live_part_target_s: float = 0.25
    live_segment_target_s: float = 1.0
    live_target_duration_s: int = 2
    live_record: bool = True  # join each broadcast's segments into one recording object
    # A publisher whose connection drops (no unpublish) and comes back within this many
    # seconds continues the same broadcast and recording; 0 ends it at once.
    live_reconnect_window_s: float = 60.0
    # Every this many seconds one keyframe becomes the stream's JPEG thumbnail.
    live_thumbnail_interval_s: float = 10.0
    # How much of a live stream the gateway's playlist lists (older segments stay in the
    # store for the recording).
    live_window_s: float = 30.0

    # Transcoder (transcoder/): the ladder is "<height>p:<kbps>" rungs, largest first;
    # rungs above the source are skipped (never upscaled). Keyframes every
    # transcode_keyframe_s on every rendition (aligned, so players can switch);
    # segments are a whole number of keyframe intervals.
    transcode_preset: str = "veryfast"
    transcode_ladder: tuple[str, ...] = ("1080p:5000", "720p:2800", "480p:1400", "360p:800")
    transcode_audio_kbps: int = 128
    transcode_segment_s: float = 6.0
    transcode_keyframe_s: float = 2.0
    # Jobs one transcoder process runs at once (each in its own child process).
    transcode_workers: int = 1
    # JetStream redelivers a job whose worker stopped sending in_progress for this long.
    transcode_ack_wait_s: float = 60.0
    transcode_max_deliver: int = 5
    transcode_retry_backoff_s: tuple[float, ...] = (10.0, 60.0, 300.0, 900.0)
    # A child that reports no progress for this long is killed (and the job retried).
    transcode_stall_timeout_s: float = 300.0
    # Address-space cap of a job's child process in MiB (0: none); a 1080p 4-rung job
    # peaks near 1.1 GiB of address space (malloc arenas capped at 4 per child).
    transcode_memory_limit_mb: int = 6144
    transcode_max_duration_s: float = 12 * 3600.0
    transcode_thumbnails: int = 10
    transcode_sprite_tile_width: int = 160
    # Live recordings (stream.recorded) go through the same ladder when true; either way
    # a recording plays at once from its live segments, and the ladder replaces that.
    transcode_recordings: bool = True

    # Uploads: tus at the gateway (gateway/tus/) and the uploader (uploader/).
    # Tus-Max-Size: an Upload-Length above it is answered 413 before any byte is read.
    tus_max_size: int = 20 * 1024**3
    # The chunk the simple API asks for, and the S3 part a PATCH body is cut into
    # (>= 5 MiB, the S3 minimum; tusd prefers 50 MiB, but parts are held in memory).
    tus_chunk_size: int = 8 * 1024**2
    # An unfinished upload expires this long after its last durable chunk (tus
    # expiration extension); the uploader then deletes what it stored.
    tus_expiry_s: int = 24 * 3600
    # One PATCH per upload at a time, across gateway processes: a lease on the upload's
    # row, renewed every third of it while the PATCH lives. A crashed gateway's lock
    # frees when the lease runs out.
    tus_lock_lease_s: float = 15.0
    # A PATCH whose body sends nothing for this long ends; what arrived is kept.
    tus_read_timeout_s: float = 20.0
    # Uploader: how often expired uploads are looked for.
    upload_sweep_interval_s: float = 60.0
    # The media probe's child process: wall time, address space, CPU seconds, and the
    # longest video accepted.
    probe_timeout_s: float = 30.0
    probe_memory_mb: int = 1024
    probe_cpu_s: int = 20
    probe_max_duration_s: float = 12 * 3600.0

    # Logs
    log_level: str = "INFO"
    log_json: bool = False

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'videopick.db').resolve()}"

    @property
    def resolved_store_path(self) -> Path:
        return self.store_path or self.data_dir / "media"

    @property
    def resolved_nats_url(self) -> str:
        return self.nats_url or f"nats://127.0.0.1:{self.nats_port}"

    @property
    def nats_servers(self) -> list[str]:
        """``nats_url`` may list a cluster's servers, comma-separated; clients get them all."""
        return split_nats_url(self.resolved_nats_url)


def split_nats_url(url: str) -> list[str]:
    return [part.strip() for part in url.split(",") if part.strip()]


def _coerce(raw: dict[str, str]) -> dict[str, Any]:
    """Turn comma lists into tuples; msgspec's ``strict=False`` handles numbers and bools."""
    out: dict[str, Any] = {}
    tuple_fields = {
        name for name, field_type in Settings.__annotations__.items() if "tuple" in str(field_type)
    }
    for name, value in raw.items():
        if name in tuple_fields:
            out[name] = tuple(part.strip() for part in value.split(",") if part.strip())
        else:
            out[name] = value
    return out


def _decode_path(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError(f"cannot read {kind!r} from the environment")


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read every ``VIDEOPICK_*`` variable; unknown names are an error, not a silent typo."""
    env = os.environ if environ is None else environ
    known = set(Settings.__struct_fields__)
    raw: dict[str, str] = {}
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name not in known:
            if name.startswith("test_"):
                continue  # test-harness variables share the prefix
            raise SettingsError(f"unknown setting {key}")
        raw[name] = value
    # The gateway's own address follows its port unless it is set (behind a proxy, TLS).
    if "public_url" not in raw and "http_port" in raw:
        raw["public_url"] = f"http://localhost:{raw['http_port']}"
    try:
        return msgspec.convert(_coerce(raw), Settings, strict=False, dec_hook=_decode_path)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"bad VIDEOPICK_* value: {exc}") from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
