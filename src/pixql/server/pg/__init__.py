"""pixql's PostgreSQL wire-protocol endpoint (``pixql serve --pg-port``).

See docs/clients/postgresql.md.
"""
