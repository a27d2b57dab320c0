"""Build the configured object store from :class:`common.settings.Settings`."""

from __future__ import annotations

from common.settings import Settings, SettingsError
from common.store.base import ObjectStore

__all__ = ["create_store"]


def create_store(settings: Settings, *, local_url_base: str = "/media") -> ObjectStore:
    """The store ``VIDEOPICK_STORE_BACKEND`` names; call ``await store.ensure_ready()`` once.

    ``local_url_base`` is where the gateway serves the folder store's files; it is
    only used by ``presigned_get_url`` of the local backend.
    """
    backend = settings.store_backend.strip().lower()
    if backend == "local":
        from common.store.local import LocalStore

        return LocalStore(settings.resolved_store_path, url_base=local_url_base)
    if backend == "s3":
        if not settings.s3_access_key or not settings.s3_secret_key:
            raise SettingsError(
                "VIDEOPICK_STORE_BACKEND=s3 needs VIDEOPICK_S3_ACCESS_KEY and "
                "VIDEOPICK_S3_SECRET_KEY"
            )
        # Imported lazily: components on the folder store never load the minio SDK.
        from common.store.s3 import S3Store

        return S3Store(
            endpoint=settings.s3_endpoint,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            bucket=settings.s3_bucket,
            region=settings.s3_region,
            secure=settings.s3_secure,
        )
    raise SettingsError(
        f"VIDEOPICK_STORE_BACKEND must be 'local' or 's3', not {settings.store_backend!r}"
    )
