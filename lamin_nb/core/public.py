"""``ln.settings``: a read-only view of the current instance, secrets masked."""

from __future__ import annotations

from typing import Any

from .instance import current
from .settings import InstanceSettings, mask_url


class StorageSettings:
    @property
    def root(self) -> Any:
        """The storage root as a UPath (``s3://...`` or a local folder)."""
        from upath import UPath

        settings = current().settings
        return UPath(settings.storage_root, **settings.storage_options)

    def __repr__(self) -> str:
        return f"StorageSettings(root={current().settings.storage_root!r})"


class Settings:
    storage = StorageSettings()

    @property
    def instance(self) -> InstanceSettings:
        return current().settings

    @property
    def db(self) -> str:
        """The database URL with any password masked."""
        return mask_url(current().settings.db_url)

    def __repr__(self) -> str:
        try:
            return f"Settings({current()!r})"
        except Exception:  # noqa: BLE001 - repr must never raise
            return "Settings(no instance)"


settings = Settings()
