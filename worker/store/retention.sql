-- Retention of the tables that grow with every run.

-- name: forget_history
-- Item history older than $1 seconds, a bounded slice at a time.
DELETE FROM variant_inventory_updates
WHERE id IN (
    SELECT id FROM variant_inventory_updates
    WHERE created_at < now() - make_interval(secs => $1)
    LIMIT $2
);

-- name: forget_daily_items
-- The daily SKU limit only looks at today (UTC); yesterday is kept for a late writer.
DELETE FROM provider_daily_items
WHERE ctid IN (
    SELECT ctid FROM provider_daily_items
    WHERE day < (now() AT TIME ZONE 'UTC')::date - 1
    LIMIT $1
);

-- name: forget_outcomes
-- What replayed and API-published messages came to, and the API's record of the messages
-- it published, once older than $1 seconds (the message retention: by then their ids are
-- forgotten too); a bounded slice of each at a time.
WITH outcomes AS (
    DELETE FROM replay_outcomes
    WHERE (replay_id, message_id) IN (
        SELECT replay_id, message_id FROM replay_outcomes
        WHERE recorded_at < now() - make_interval(secs => $1)
        LIMIT $2
    )
    RETURNING 1
), messages AS (
    DELETE FROM api_messages
    WHERE message_id IN (
        SELECT message_id FROM api_messages
        WHERE created_at < now() - make_interval(secs => $1)
        LIMIT $2
    )
    RETURNING 1
)
SELECT (SELECT count(*) FROM outcomes) AS outcomes, (SELECT count(*) FROM messages) AS messages;

-- name: forget_notifications
-- Notifications decided more than $1 seconds ago (the item history's retention), a bounded
-- slice at a time; one still `sending` by then was left by a replica that died.
DELETE FROM notifications
WHERE id IN (
    SELECT id FROM notifications
    WHERE created_at < now() - make_interval(secs => $1)
    LIMIT $2
);
