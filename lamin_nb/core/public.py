"""``ln.settings``: a read-only view of the current instance, secrets masked."""

from __future__ import annotations

from typing import Any

from .instance import current
from .settings import InstanceSettings, mask_url


class StorageSettings:
    """The storage of the current instance (``ln.settings.storage``).

    Attributes
    ----------
    root : upath.UPath
        The storage root, ``s3://bucket/prefix`` or a local folder.

    Examples
    --------
    >>> import lamin_nb as ln
    >>> ln.settings.storage.root  # doctest: +SKIP
    PosixUPath('/home/me/data')
    """

    @property
    def root(self) -> Any:
        """The storage root as a UPath (``s3://...`` or a local folder).

        Raises ``InstanceError`` when there is no current instance.
        """
        from upath import UPath

        settings = current().settings
        return UPath(settings.storage_root, **settings.storage_options)

    def __repr__(self) -> str:
        return f"StorageSettings(root={current().settings.storage_root!r})"


class Settings:
    """A read-only view of the current instance, secrets masked (``ln.settings``).

    Each attribute is read from the current instance when it is accessed, connecting to it
    first if this process has not yet (see ``ln.connect``); with no instance at all, the access
    raises ``InstanceError``. Change the current instance with ``ln.init`` or ``ln.connect``.

    Attributes
    ----------
    storage : StorageSettings
        The storage; ``storage.root`` is the root as a UPath (``s3://...`` or a local folder).
    instance : InstanceSettings
        Name, uid, storage root, database URL and storage options of the current instance;
        its repr masks the password.
    db : str
        The database URL with any password masked.

    Examples
    --------
    >>> import lamin_nb as ln
    >>> ln.init(storage="./data")  # doctest: +SKIP
    Instance(name='data', storage='/home/me/data', db='sqlite:///...')
    >>> ln.settings.storage.root  # doctest: +SKIP
    PosixUPath('/home/me/data')
    >>> ln.settings.db  # doctest: +SKIP
    'sqlite:////home/me/.lamin_nb/instances/data/lamin.db'
    """

    storage = StorageSettings()

    @property
    def instance(self) -> InstanceSettings:
        """Name, uid, storage root, database URL and storage options of the current instance.

        Raises ``InstanceError`` when there is no current instance.
        """
        return current().settings

    @property
    def db(self) -> str:
        """The database URL with any password masked.

        Raises ``InstanceError`` when there is no current instance.
        """
        return mask_url(current().settings.db_url)

    def __repr__(self) -> str:
        try:
            return f"Settings({current()!r})"
        except Exception:  # noqa: BLE001 - repr must never raise
            return "Settings(no instance)"


settings = Settings()
