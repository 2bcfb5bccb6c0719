"""Incremental parsers: bytes or text in, records out. They know nothing of Postgres."""



def field_cap_reason(name: str, length: int, cap: int) -> str:
    """Why a record with an over-long field is rejected."""
    return (f"{name} is {length} characters long, over the {cap}-character cap "
            "(FEED_WORKER_MAX_FIELD_CHARS)")
