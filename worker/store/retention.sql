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
