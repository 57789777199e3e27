"""The issuer's PostgreSQL backend (psycopg 3 and its pool), one module per group of tables, mirroring
:mod:`citypass.issuer.sqlite`.

:class:`citypass.issuer.postgres.store.PostgresStore` combines them into an
:class:`citypass.issuer.repository.IssuerRepository`; :mod:`citypass.issuer.postgres.migrations` holds the schema.
Several issuer nodes (API processes and MQTT ingest workers) can share one database: the guarantees the
repository promises hold across them (see :mod:`citypass.issuer.postgres.connection`).
"""
