-- The HTTP API's reads and writes: tokens, providers, feeds, items, published messages.
-- $scope is the caller's provider (a provider token) or NULL (an admin token): a row of
-- another provider is not found, exactly as one that does not exist.

-- name: create_token
INSERT INTO api_tokens (secret_sha256, dropship_provider_id, admin)
VALUES ($1, $2, $3)
RETURNING id;

-- name: revoke_token
UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL
RETURNING id;

-- name: token
SELECT t.id, t.secret_sha256, t.dropship_provider_id, t.admin
FROM api_tokens t
LEFT JOIN dropship_providers p ON p.id = t.dropship_provider_id
WHERE t.id = $1 AND t.revoked_at IS NULL AND NOT coalesce(p.archived, false);

-- name: insert_provider
INSERT INTO dropship_providers (name, sku_prefix, daily_sku_limit, archived)
VALUES ($1, $2, $3, $4)
RETURNING id, name, sku_prefix, daily_sku_limit, archived, created_at, updated_at;

-- name: get_provider
SELECT id, name, sku_prefix, daily_sku_limit, archived, created_at, updated_at
FROM dropship_providers
WHERE id = $1 AND ($2::bigint IS NULL OR id = $2);

-- name: list_providers
-- Keyset pagination: ids after $2, at most $3.
SELECT id, name, sku_prefix, daily_sku_limit, archived, created_at, updated_at
FROM dropship_providers
WHERE ($1::bigint IS NULL OR id = $1) AND id > $2
ORDER BY id
LIMIT $3;

-- name: update_provider
UPDATE dropship_providers SET
    name = $3, sku_prefix = $4, daily_sku_limit = $5, archived = $6, updated_at = now()
WHERE id = $1 AND ($2::bigint IS NULL OR id = $2)
RETURNING id, name, sku_prefix, daily_sku_limit, archived, created_at, updated_at;

-- name: insert_feed
-- The feed's settings in worker/store/api.py FEED_COLUMNS order ($1..$30).
INSERT INTO inventory_feeds (
    dropship_provider_id, name, enabled, resource_type, resource_location,
    authentication_token, delimiter, csv_has_header, decimal_notation, encoding, mapping,
    automatically_connect, automatically_connect_by_barcode, automatically_connect_prefix,
    case_insensitive_skus, fetch_cleanup, fetch_frequency, fetch_interval,
    automated_fetching, cache_imports, breaker_max_zeroed_share, breaker_max_quantity_drop,
    breaker_max_rows_drop, breaker_max_bytes_drop, download_deadline_s, run_deadline_s,
    notify_url, notify_secret, notify_rejected_share, auto_disable_after)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13, $14, $15, $16, $17,
        make_interval(secs => $18), $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29,
        $30)
RETURNING id;

-- name: update_feed
-- $31 the feed, $32 the caller's scope; the settings as in insert_feed.
UPDATE inventory_feeds f SET
    dropship_provider_id = $1, name = $2, enabled = $3, resource_type = $4,
    resource_location = $5, authentication_token = $6, delimiter = $7, csv_has_header = $8,
    decimal_notation = $9, encoding = $10, mapping = $11::jsonb, automatically_connect = $12,
    automatically_connect_by_barcode = $13, automatically_connect_prefix = $14,
    case_insensitive_skus = $15, fetch_cleanup = $16, fetch_frequency = $17,
    fetch_interval = make_interval(secs => $18), automated_fetching = $19,
    cache_imports = $20, breaker_max_zeroed_share = $21, breaker_max_quantity_drop = $22,
    breaker_max_rows_drop = $23, breaker_max_bytes_drop = $24, download_deadline_s = $25,
    run_deadline_s = $26, notify_url = $27, notify_secret = $28,
    notify_rejected_share = $29, auto_disable_after = $30, updated_at = now()
WHERE f.id = $31 AND ($32::bigint IS NULL OR f.dropship_provider_id = $32)
RETURNING f.id;

-- name: get_feed
-- include: feeds.sql:feed_rows
WHERE f.id = $1 AND ($2::bigint IS NULL OR f.dropship_provider_id = $2);

-- name: list_feeds
-- $1 scope, $2 a provider to list (or NULL), keyset: ids after $3, at most $4.
-- include: feeds.sql:feed_rows
WHERE ($1::bigint IS NULL OR f.dropship_provider_id = $1)
  AND ($2::bigint IS NULL OR f.dropship_provider_id = $2)
  AND f.id > $3
ORDER BY f.id
LIMIT $4;

-- name: get_item
-- One stored item of a feed, by its external id, as the API shows it.
SELECT id, inventory_feed_id, external_id, vendor_sku, barcode, name, inventory_quantity,
       inventory_policy, retail_price, cost_price, compare_at_price, grams, mpn,
       external_group_id, options, images, extra, currency, variant_id, inventory_updated_at,
       inventory_quantity_override, missing_since, available, last_fetched_at, created_at,
       updated_at
FROM inventory_feed_variants
WHERE inventory_feed_id = $1 AND external_id = $2;

-- name: message_published_at
-- When a message of this id (an Idempotency-Key) was published and confirmed; no row when
-- it was not.
SELECT published_at FROM api_messages WHERE message_id = $1;

-- name: record_published
-- Messages published and confirmed ($1 ids, $2 feeds, $3 tokens, $4 variant counts), the
-- requests of the moment in one statement; one published before keeps its first time.
INSERT INTO api_messages (message_id, inventory_feed_id, api_token_id, variants, published_at)
SELECT m, f, t, v, now() FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::int[])
    AS u (m, f, t, v)
ON CONFLICT (message_id) DO UPDATE SET
    published_at = coalesce(api_messages.published_at, excluded.published_at);

-- name: message_status
-- A published message (of the caller's scope $2) and what the daemon recorded for it:
-- the latest outcome (a replay's, when it was replayed).
SELECT m.message_id, m.inventory_feed_id, m.variants, m.created_at, m.published_at,
       o.outcome, o.applied, o.stale, o.rejected, o.reason, o.recorded_at
FROM api_messages m
JOIN inventory_feeds f ON f.id = m.inventory_feed_id
LEFT JOIN LATERAL (
    SELECT * FROM replay_outcomes r WHERE r.message_id = m.message_id
    ORDER BY r.recorded_at DESC LIMIT 1
) o ON true
WHERE m.message_id = $1 AND ($2::bigint IS NULL OR f.dropship_provider_id = $2);

-- name: message_rejects
-- The variants of a message that the value checks rejected: index and reason.
SELECT position, reason FROM feed_run_rejects
WHERE message_id = $1
ORDER BY position
LIMIT $2;

-- name: list_items
-- Items in the caller's scope $1, filtered: $2 feed, $3 external id, $4 vendor SKU,
-- $5 barcode, $6 connected or not, $7 changed since; keyset: ids after $8, at most $9.
-- include: feeds.sql:item_rows
WHERE ($1::bigint IS NULL OR f.dropship_provider_id = $1)
  AND ($2::bigint IS NULL OR v.inventory_feed_id = $2)
  AND ($3::text IS NULL OR v.external_id = $3)
  AND ($4::text IS NULL OR v.vendor_sku = $4)
  AND ($5::text IS NULL OR v.barcode = $5)
  AND ($6::boolean IS NULL OR (v.variant_id IS NOT NULL) = $6)
  AND ($7::timestamptz IS NULL OR v.updated_at >= $7)
  AND v.id > $8
ORDER BY v.id
LIMIT $9;

-- name: get_item_by_id
-- One item (of the caller's scope $2), with its feed's state for writing to it.
-- include: feeds.sql:item_rows
WHERE v.id = $1 AND ($2::bigint IS NULL OR f.dropship_provider_id = $2);

-- name: list_runs
-- A feed's runs, newest first: ids before $2 (keyset), at most $3.
SELECT id, inventory_feed_id, kind, status, message_id, source, attempts, started_at,
       finished_at, rows_read, inserted, updated, unchanged, rejected, duplicates, zeroed,
       connected, ambiguous, skipped, bytes, timings, details, error
FROM feed_runs
WHERE inventory_feed_id = $1 AND id < $2
ORDER BY id DESC
LIMIT $3;

-- name: run_in_scope
-- A run's feed, when the run is in the caller's scope $2.
SELECT r.inventory_feed_id
FROM feed_runs r
JOIN inventory_feeds f ON f.id = r.inventory_feed_id
WHERE r.id = $1 AND ($2::bigint IS NULL OR f.dropship_provider_id = $2);

-- name: list_rejects
-- A run's rejects in order: ids after $2 (keyset), at most $3.
SELECT id, position, message_id, raw, reason
FROM feed_run_rejects
WHERE run_id = $1 AND id > $2
ORDER BY id
LIMIT $3;
