-- Push: remembered message ids (idempotency) and one push run per feed and minute.

CREATE TABLE processed_messages (
    message_id   text PRIMARY KEY,
    processed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX processed_messages_processed_at_idx ON processed_messages (processed_at);

-- A push run aggregates the micro-batches of one feed within one minute.
CREATE UNIQUE INDEX feed_runs_push_window ON feed_runs (inventory_feed_id, started_at)
    WHERE kind = 'push';
