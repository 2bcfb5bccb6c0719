-- The cleanup circuit breaker's limits per feed. NULL: the worker's setting
-- (FEED_WORKER_CLEANUP_MAX_ZEROED_SHARE, FEED_WORKER_CLEANUP_MAX_QUANTITY_DROP,
-- FEED_WORKER_BREAKER_MAX_ROWS_DROP, FEED_WORKER_BREAKER_MAX_BYTES_DROP). Each is a share
-- from 0 to 1: a pull of a feed with cleanup on is held when it would zero more than this
-- share of the feed's items, drop its tracked quantity by more than this share, or read
-- this share fewer records or bytes than the feed's last succeeded pull.
ALTER TABLE inventory_feeds
    ADD COLUMN breaker_max_zeroed_share  double precision
        CHECK (breaker_max_zeroed_share BETWEEN 0 AND 1),
    ADD COLUMN breaker_max_quantity_drop double precision
        CHECK (breaker_max_quantity_drop BETWEEN 0 AND 1),
    ADD COLUMN breaker_max_rows_drop     double precision
        CHECK (breaker_max_rows_drop BETWEEN 0 AND 1),
    ADD COLUMN breaker_max_bytes_drop    double precision
        CHECK (breaker_max_bytes_drop BETWEEN 0 AND 1);

-- The breaker's rows and bytes rules read the feed's last succeeded pull.
CREATE INDEX feed_runs_last_succeeded_pull_idx ON feed_runs (inventory_feed_id, id DESC)
    WHERE kind = 'pull' AND status = 'succeeded';
