"""Postgres: connections, migrations, the bulk COPY + merge core, and run records."""
