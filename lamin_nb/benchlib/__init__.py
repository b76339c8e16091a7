"""Support for ``lamin-nb bench`` and ``lamin-nb selftest``.

Both run in a scratch area (a storage prefix, a database and a settings folder of their
own) that they create and remove, so a user's instance and data are never touched.
Nothing here is imported by ``import lamin_nb``.
"""
