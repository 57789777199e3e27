"""The issuer's SQLite backend (sqlite-utils), one module per group of tables.

:class:`issuer.store.IssuerStore` combines them into the :class:`issuer.repository.IssuerRepository`
implementation; :mod:`issuer.sqlite.migrations` holds the schema.
"""
