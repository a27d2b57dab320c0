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

    # Ingest
    rtmp_host: str = "127.0.0.1"
    rtmp_port: int = 1935

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
    try:
        return msgspec.convert(_coerce(raw), Settings, strict=False, dec_hook=_decode_path)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"bad VIDEOPICK_* value: {exc}") from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
