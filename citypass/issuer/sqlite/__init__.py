"""The issuer's SQLite backend (sqlite-utils), one module per group of tables.

:class:`citypass.issuer.store.IssuerStore` combines them into the :class:`citypass.issuer.repository.IssuerRepository`
implementation; :mod:`citypass.issuer.sqlite.migrations` holds the schema.
"""
