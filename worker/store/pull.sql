-- The bulk core of a pull: COPY into a temp staging table, then one set-based merge.

-- name: create_staging
-- Filled in file order; blanks arrive as NULL (COPY ... NULL ''). The values were
-- checked by the mapper, so the casts of COPY cannot fail. Made once per connection and
-- emptied at commit: no catalog churn per run, and the merge's plan stays cached.
CREATE TEMP TABLE IF NOT EXISTS pull_staging (
    pos                bigint NOT NULL,   -- the record's line (or record number) in the file
    external_id        text COLLATE "C" NOT NULL,
    vendor_sku         text,
    barcode            text,
    name               text,
    inventory_quantity integer,
    inventory_policy   text,
    retail_price       numeric,
    cost_price         numeric,
    compare_at_price   numeric,
    grams              numeric,
    mpn                text,
    external_group_id  text,
    options            jsonb,
    images             jsonb,
    extra              jsonb,
    currency           text,
    fingerprint        bigint             -- of the row's text (worker/fingerprints.py)
) ON COMMIT DELETE ROWS;
-- ... and merge_seen's: the ids of the feed's items no row left out stands for.
CREATE TEMP TABLE IF NOT EXISTS pull_unseen (id bigint NOT NULL) ON COMMIT DELETE ROWS;

-- name: analyze_staging
ANALYZE pull_staging;

-- name: merge_settings
-- $2 'off' for large files: the row estimates of the merge's CTEs are far too low for them,
-- and nested loops over hundreds of thousands of rows (index probes into variants) are
-- what the planner would pick. $3: a large file's merge is planned for its values and
-- its staging table's statistics (force_custom_plan); a small one's plan is made once per
-- connection and kept (force_generic_plan: planning the merge costs more than running it
-- on a few rows). No JIT: compiling the merge's expressions costs more than it saves (the
-- pull benchmark shows it).
-- Then takes the feed's merge lock (lock class $4, key $5), which serialises the writers of
-- one feed (pulls and push groups) until the transaction ends.
SELECT set_config('work_mem', $1, true), set_config('plan_cache_mode', $3, true),
       set_config('enable_nestloop', $2, true), set_config('jit', 'off', true),
       pg_advisory_xact_lock($4::int, $5::int);

-- name: lock_provider
-- Serialise the writers of one provider with a daily SKU limit (the day's count is shared).
SELECT pg_advisory_xact_lock($1::int, $2::int);

-- name: daily_used
-- Items each provider $1 wrote on day $2 (the daily SKU limit counts distinct items).
SELECT p AS provider_id,
       (SELECT count(*) FROM provider_daily_items d
        WHERE d.dropship_provider_id = p AND d.day = $2) AS used
FROM unnest($1::bigint[]) AS p;

-- name: load_known
-- include: pull_merge.sql:known_items

-- name: load_known_sorted
-- The same in fingerprint order, for a feed too large to sort in the worker's memory
-- (the sort's memory: set_work_mem first).
-- include: pull_merge.sql:known_items
ORDER BY 2

-- name: set_work_mem
SELECT set_config('work_mem', $1, true)

-- name: merge
-- $1 feed id; $2 bit mask of the columns the feed maps (bit n = n-th column after
-- external_id, see worker/mapping.py COLUMNS); unmapped columns keep their stored values.
-- $3 run id (NULL: a dry run, nothing is recorded against a run); $4 zero the feed's
-- items missing from the file (cleanup); $5 record quantity/price changes (item history);
-- $6 items the provider may still write today (NULL: no daily limit); $7 provider id;
-- $8 the UTC day; $9..$13 the feed's connecting settings: by SKU, by barcode, the
-- provider's SKU prefix, prefix only, case-insensitive SKUs. $14 store the staged rows'
-- fingerprints with the items (false when the mask leaves some of the mapper's columns
-- unwritten: the item is then not what its text alone makes). $15 false (merge_seen: true).
-- Duplicates: the last occurrence in the file wins. Unchanged rows are not written.
-- New rows go in key order (see `ins`). A manual quantity override wins over the feed.
-- New or re-keyed items connect to the store's variants in the same statement
-- (connect.sql). Every read of inventory_feed_variants names the feed ($1), so that the
-- planner can keep to the feed's rows: without it, a hash join on id alone scans the
-- items of every feed (the pull benchmark's S runs measure it).
WITH
-- include: pull_merge.sql:merge_src
, paired AS MATERIALIZED (
-- include: pull_merge.sql:merge_paired
    FROM src s
    FULL JOIN (SELECT * FROM inventory_feed_variants WHERE inventory_feed_id = $1) t
        ON t.external_id = s.external_id
),
-- include: pull_merge.sql:merge_middle
, missing AS MATERIALIZED (
    -- Cleanup: the feed's items that the file no longer has.
    SELECT target_id AS id, old_quantity AS inventory_quantity,
           old_policy AS inventory_policy, old_price AS retail_price,
           CASE WHEN old_manual THEN old_quantity ELSE 0 END AS new_quantity
    FROM paired
    WHERE $4::boolean AND external_id IS NULL AND missing_since IS NULL
),
-- include: pull_merge.sql:merge_tail

-- name: merge_seen
-- The merge of a refresh that left out its unchanged rows (worker/fingerprints.py): the
-- parameters of `merge` ($15 true). pull_unseen holds the ids of the feed's available
-- items that no dropped row stands for: the items the file no longer has are among them,
-- and only they are read for the cleanup. An item a push adds while the file streams is
-- not among them: it is left for the next pull (it is newer than the file).
WITH
-- include: pull_merge.sql:merge_src
, paired AS MATERIALIZED (
-- include: pull_merge.sql:merge_paired
    FROM src s
    -- one probe of the feed's key index per row, whatever the planner's estimates (the
    -- LIMIT keeps the subquery from being flattened into a join it could plan otherwise)
    LEFT JOIN LATERAL (
        SELECT * FROM inventory_feed_variants t
        WHERE t.inventory_feed_id = $1 AND t.external_id = s.external_id LIMIT 1) t ON true
),
-- include: pull_merge.sql:merge_middle
, missing AS MATERIALIZED (
    SELECT t.id, t.inventory_quantity, t.inventory_policy, t.retail_price,
           CASE WHEN t.inventory_quantity_override = 'manual' THEN t.inventory_quantity
                ELSE 0 END AS new_quantity
    FROM pull_unseen u
    -- those no row of the file matched (NOT IN over a subquery: one hash of the matched
    -- ids, whatever the estimates), each read by its id
    CROSS JOIN LATERAL (
        SELECT * FROM inventory_feed_variants t WHERE t.id = u.id LIMIT 1) t
    WHERE $4::boolean AND u.id NOT IN (SELECT target_id FROM paired WHERE target_id IS NOT NULL)
      AND t.inventory_feed_id = $1 AND t.missing_since IS NULL
),
-- include: pull_merge.sql:merge_tail

-- name: feed_empty
-- Whether feed $1 has no items: its first import may then copy its rows straight in.
SELECT NOT EXISTS (SELECT 1 FROM inventory_feed_variants WHERE inventory_feed_id = $1)

-- name: lock_feed
-- The feed's merge lock (class $1, key $2), as merge_settings takes it, for a first
-- import: taken before its rows are copied, held until the transaction ends.
SELECT pg_advisory_xact_lock($1::int, $2::int)

-- name: direct_start
-- Under the lock: whether feed $1 is still empty, and the order time of what run $2 writes
-- (as `pulled` in the merge), as COPY's text.
SELECT NOT EXISTS (SELECT 1 FROM inventory_feed_variants WHERE inventory_feed_id = $1)
           AS empty,
       coalesce((SELECT started_at FROM feed_runs WHERE id = $2::bigint), now())::text
           AS ordered_at

-- name: unprint_feed
-- A first import whose merge would not have kept fingerprints (some of the mapper's
-- columns unwritten): none.
UPDATE inventory_feed_variants SET fingerprint = NULL
WHERE inventory_feed_id = $1 AND fingerprint IS NOT NULL

-- name: direct_finish
-- After a first import copied its rows straight in (and merged those staged after a key
-- repeated): its items connect to the store's variants as a merge's inserts would ($2..$6:
-- by SKU, by barcode, the provider's SKU prefix, prefix only, case-insensitive SKUs), and
-- its counts. Every item of feed $1 is one it inserted (the feed's lock was held). A
-- connected item keeps its fingerprint (0014_fingerprint_connect.sql).
WITH conf AS NOT MATERIALIZED (
    SELECT $1::bigint AS inventory_feed_id, $2::boolean AS by_sku,
           $3::boolean AS by_barcode, $4::text AS prefix, $5::boolean AS prefix_only,
           $6::boolean AS fold
), cand AS NOT MATERIALIZED (
    SELECT inventory_feed_id, external_id, vendor_sku, barcode
    FROM inventory_feed_variants
    WHERE inventory_feed_id = $1 AND ($2::boolean OR $3::boolean)
),
-- include: connect.sql:links
, linked AS (
    UPDATE inventory_feed_variants t SET variant_id = l.variant_id
    FROM links l
    WHERE l.unique_match AND t.inventory_feed_id = $1 AND t.external_id = l.external_id
)
SELECT count(*) AS items,
       coalesce(sum(inventory_quantity) FILTER (WHERE inventory_policy = 'track'
                AND inventory_quantity > 0), 0) AS stock,
       (SELECT count(*) FROM links WHERE unique_match) AS connected,
       (SELECT count(*) FROM links WHERE NOT unique_match) AS ambiguous,
       (SELECT array_agg(vendor_sku ORDER BY vendor_sku) FROM (
           SELECT DISTINCT vendor_sku FROM links WHERE NOT unique_match
           ORDER BY vendor_sku LIMIT 20) a) AS ambiguous_skus
FROM inventory_feed_variants
WHERE inventory_feed_id = $1
