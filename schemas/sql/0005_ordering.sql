-- The order of updates to one item, independent of delivery order, and what replayed
-- messages came to.

-- The order time of the last update written to the item: a pushed variant's own
-- inventoryUpdatedAt, else its message's time (the publisher's timestamp_in_ms header,
-- else the time the worker first received it). An update older than this is stale and
-- skipped, whenever it arrives: after a failed group, a redelivery or a replay days later.
-- NULL for items written before this column existed.
ALTER TABLE inventory_feed_variants ADD COLUMN ordered_at timestamptz;

-- What each message that `feed-worker replay requeue` sent back came to, written by the
-- daemon that applied it (only messages carrying the x-replay-id header are recorded).
CREATE TABLE replay_outcomes (
    replay_id    text NOT NULL,
    message_id   text NOT NULL,
    outcome      text NOT NULL
        CHECK (outcome IN ('applied', 'stale', 'rejected', 'repeat', 'dead-lettered')),
    variants     integer NOT NULL DEFAULT 0,
    applied      integer NOT NULL DEFAULT 0,  -- variants written or found unchanged
    stale        integer NOT NULL DEFAULT 0,  -- variants older than the stored item's
    rejected     integer NOT NULL DEFAULT 0,
    reason       text,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (replay_id, message_id)
);
CREATE INDEX replay_outcomes_recorded_idx ON replay_outcomes (recorded_at);
