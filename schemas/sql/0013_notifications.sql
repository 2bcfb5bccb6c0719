-- Notifications: a webhook told when a feed's pull failed, was held by the cleanup
-- circuit breaker, succeeded with too many rejects, or when the feed went stale; and a
-- feed disabled by itself after too many failed pulls in a row.

-- Per feed (NULL: the worker's FEED_WORKER_NOTIFY_* and FEED_WORKER_AUTO_DISABLE_AFTER).
-- notify_secret is write-only: the API shows it as ***, nothing logs it.
ALTER TABLE inventory_feeds
    ADD COLUMN notify_url text,
    ADD COLUMN notify_secret text,
    ADD COLUMN notify_rejected_share double precision
        CHECK (notify_rejected_share BETWEEN 0 AND 1),
    ADD COLUMN auto_disable_after integer CHECK (auto_disable_after >= 0),
    -- why the worker disabled the feed, and when; cleared when the feed is enabled again
    ADD COLUMN disabled_reason text,
    ADD COLUMN disabled_at timestamptz;

-- Enabling a feed again clears the reason it was disabled; its failed pulls before that
-- no longer count towards disabling it again (disabled_at stays, as the point from which
-- they are counted).
CREATE FUNCTION inventory_feeds_clear_disabled_reason() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.disabled_reason := NULL;
    RETURN NEW;
END $$;

CREATE TRIGGER inventory_feeds_clear_disabled_reason
    BEFORE UPDATE OF enabled ON inventory_feeds
    FOR EACH ROW
    WHEN (NEW.enabled AND NOT OLD.enabled)
    EXECUTE FUNCTION inventory_feeds_clear_disabled_reason();

-- One row per notification decided: its key makes it once, whichever replica decides it
-- and however often ('run-<run id>' for a run, 'stale-<feed id>-<last succeeded pull or 0>'
-- for a feed gone stale: once until it next succeeds).
CREATE TABLE notifications (
    id                bigserial PRIMARY KEY,
    key               text NOT NULL UNIQUE,
    inventory_feed_id bigint NOT NULL REFERENCES inventory_feeds (id) ON DELETE CASCADE,
    run_id            bigint REFERENCES feed_runs (id) ON DELETE SET NULL,
    event             text NOT NULL
        CHECK (event IN ('run.failed', 'run.held', 'run.rejects', 'feed.stale')),
    status            text NOT NULL DEFAULT 'sending'
        CHECK (status IN ('sending', 'sent', 'failed')),
    attempts          integer NOT NULL DEFAULT 0,
    error             text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    sent_at           timestamptz
);
CREATE INDEX notifications_feed ON notifications (inventory_feed_id, created_at);
