"""pixql's PostgreSQL wire-protocol endpoint (``pixql serve --pg-port``); see docs/clients/postgresql.md."""
