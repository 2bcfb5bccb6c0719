-- Deadlines a feed may set for itself (NULL: the worker's settings), for feeds known to be
-- huge or slow.
ALTER TABLE inventory_feeds
    ADD COLUMN download_deadline_s double precision CHECK (download_deadline_s > 0),
    ADD COLUMN run_deadline_s double precision CHECK (run_deadline_s > 0);
