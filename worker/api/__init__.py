"""The HTTP API (`feed-worker api`): a stateless aiohttp process beside the daemon that
shares its code paths (decoding, value checks, the push merge, publishing)."""
