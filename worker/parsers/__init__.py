"""Incremental parsers: bytes or text in, records out. They know nothing of Postgres."""
