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
-- ... and a feed's second file's rows (mapping.secondary), external_id holding the key.
CREATE TEMP TABLE IF NOT EXISTS pull_secondary (LIKE pull_staging) ON COMMIT DELETE ROWS;

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

-- name: workers_hash_joins
-- Citus: a pull merge's steps run on the workers, which set_config does not reach (SET
-- LOCAL goes on there: db.sql custom_plans). Without it a worker, whose shard had no
-- statistics yet after a first import, joined 20k changed rows with the feed's 200k items
-- in nested loops, for minutes.
SET LOCAL enable_nestloop = off;

-- name: analyze_items
-- Citus: after a first import the workers' shards have no statistics for its rows (the
-- coordinator's ANALYZE goes on to them); the next pull's merge was planned for empty
-- shards and ran for minutes.
ANALYZE inventory_feed_variants;

-- name: lock_provider
-- Serialise the writers of one provider with a daily SKU limit (the day's count is shared).
SELECT pg_advisory_xact_lock($1::int, $2::int);

-- name: daily_used
-- Items each provider $1 wrote on day $2 (the daily SKU limit counts distinct items).
SELECT p AS provider_id,
       (SELECT count(*) FROM provider_daily_items d
        WHERE d.dropship_provider_id = p AND d.day = $2) AS used
FROM unnest($1::bigint[]) AS p;

-- name: daily_used__citus
-- As daily_used; Citus plans no correlated subquery beside a set-returning function.
SELECT p AS provider_id, coalesce(d.used, 0) AS used
FROM unnest($1::bigint[]) AS p
LEFT JOIN (SELECT dropship_provider_id, count(*) AS used FROM provider_daily_items
           WHERE dropship_provider_id = ANY($1::bigint[]) AND day = $2
           GROUP BY dropship_provider_id) d ON d.dropship_provider_id = p;

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
-- include: pull_merge.sql:probe_by_key
),
-- include: pull_merge.sql:merge_middle
, missing AS MATERIALIZED (
-- include: pull_merge.sql:unseen_missing
),
-- include: pull_merge.sql:merge_tail

-- name: merge_segment
-- A large refresh merged while its file still streams, a segment at a time
-- (pipeline/pull.py): the parameters of merge_seen ($15 false), then $16 and $17, the
-- positions of the segment's staged rows (after $16, up to $17; NULL: to the end), and $18,
-- whether it is the last segment. Before the last, the rows that may connect are held back
-- (pull_deferred) and merged with the last, so that connecting judges all of the file's
-- candidates at once. Each segment notes the available items it matched (pull_matched):
-- the cleanup leaves them, and the caller reads merge_seen's matched_ids from them
-- (segment_matched). Each key is in one segment (fingerprints.Repeated).
WITH
src AS (
-- include: pull_merge.sql:src_rows
    FROM pull_staging
    WHERE (pos > $16::bigint AND pos <= coalesce($17::bigint, pos))
       OR ($18::boolean AND pos IN (SELECT pos FROM pull_deferred))
    ORDER BY external_id, pos DESC
), paired AS MATERIALIZED (
-- include: pull_merge.sql:merge_paired
    FROM src s
-- include: pull_merge.sql:probe_by_key
), deferred AS (
    INSERT INTO pull_deferred
    SELECT pos FROM paired
    WHERE NOT $18::boolean AND ($9::boolean OR $10::boolean) AND rekeyed
      AND (target_id IS NULL OR changed)
), joined AS NOT MATERIALIZED (
    SELECT * FROM paired
    WHERE $18::boolean OR NOT (($9::boolean OR $10::boolean) AND rekeyed
                               AND (target_id IS NULL OR changed))
),
-- include: pull_merge.sql:merge_rules
, missing AS MATERIALIZED (
-- include: pull_merge.sql:unseen_missing
      AND $18::boolean AND u.id NOT IN (SELECT id FROM pull_matched)
), noted AS (
    INSERT INTO pull_matched
    SELECT target_id FROM joined WHERE target_id IS NOT NULL AND missing_since IS NULL
),
-- include: pull_merge.sql:merge_tail

-- name: create_segments
-- A segmented merge's notes (merge_segment), made by the connection's first.
CREATE TEMP TABLE IF NOT EXISTS pull_deferred (pos bigint NOT NULL) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS pull_matched (id bigint NOT NULL) ON COMMIT DELETE ROWS;

-- name: segment_matched
-- After a segmented merge's last segment: merge_seen's matched_ids (the items the file's
-- rows matched that were not among the unseen ones).
SELECT array_agg(id) AS matched_ids FROM pull_matched
WHERE id NOT IN (SELECT id FROM pull_unseen)

-- name: merge_seen__citus
-- As merge_seen; Citus plans no lateral subquery with a LIMIT over a distributed table:
-- the feed's items are joined (as `merge` does), the unseen ones by id and feed.
WITH
-- include: pull_merge.sql:merge_src
, paired AS MATERIALIZED (
-- include: pull_merge.sql:merge_paired
    FROM src s
    LEFT JOIN (SELECT * FROM inventory_feed_variants WHERE inventory_feed_id = $1) t
        ON t.external_id = s.external_id
),
-- include: pull_merge.sql:merge_middle
, missing AS MATERIALIZED (
    SELECT t.id, t.inventory_quantity, t.inventory_policy, t.retail_price,
           CASE WHEN t.inventory_quantity_override = 'manual' THEN t.inventory_quantity
                ELSE 0 END AS new_quantity
    FROM pull_unseen u
    JOIN (SELECT * FROM inventory_feed_variants WHERE inventory_feed_id = $1) t
        ON t.id = u.id
    -- an anti-join: a worker runs this with its own work_mem, where NOT IN's hash of the
    -- matched ids may not fit (it then scans them again for each item)
    LEFT JOIN (SELECT target_id FROM paired WHERE target_id IS NOT NULL) m
        ON m.target_id = u.id
    WHERE $4::boolean AND m.target_id IS NULL AND t.missing_since IS NULL
),
-- include: pull_merge.sql:merge_tail

-- name: feed_empty
-- Whether feed $1 has no items (its first import may then copy its rows straight in), and
-- whether the store has variants to connect them to.
SELECT NOT EXISTS (SELECT 1 FROM inventory_feed_variants WHERE inventory_feed_id = $1)
           AS empty,
       EXISTS (SELECT 1 FROM variants) AS store

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

-- name: index_scans
-- $1 'off' around a large first import's connecting and counting: the table's statistics
-- do not know its new rows, and an index scan would read them one at a time in key order.
SELECT set_config('enable_indexscan', $1, true)

-- name: direct_finish
-- After a first import copied its rows straight in (and merged those staged after a key
-- repeated): its items connect to the store's variants as a merge's inserts would ($2..$6:
-- by SKU, by barcode, the provider's SKU prefix, prefix only, case-insensitive SKUs), and
-- its counts. Every item of feed $1 is one it inserted (the feed's lock was held). A
-- connected item keeps its fingerprint (0012_fingerprint_connect.sql).
WITH conf AS NOT MATERIALIZED (
    SELECT $1::bigint AS inventory_feed_id, $2::boolean AS by_sku,
           $3::boolean AS by_barcode, $4::text AS prefix, $5::boolean AS prefix_only,
           $6::boolean AS fold, false AS may_be_linked  -- its items were copied unlinked
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

-- name: join_secondary
-- A feed's second file (pull_secondary, its key in external_id) joined into the staged
-- rows of feed $1: each column it owns (mask $2, bits as `merge`) comes from its row of
-- the key (the last occurrence in its file), else the stored item keeps its value, else
-- (a new item) what the feed's file had. $3: the key is the staged rows' vendor_sku (else
-- their external_id). Counts the staged rows it matched and did not, and its keys no
-- staged row has.
WITH sec AS MATERIALIZED (
    SELECT DISTINCT ON (external_id) * FROM pull_secondary ORDER BY external_id, pos DESC
), j AS MATERIALIZED (
    SELECT s.ctid AS sid, c.external_id IS NOT NULL AS matched, t.id IS NOT NULL AS stored,
           c.vendor_sku AS c_vendor_sku, t.vendor_sku AS t_vendor_sku,
           c.barcode AS c_barcode, t.barcode AS t_barcode,
           c.name AS c_name, t.name AS t_name,
           c.inventory_quantity AS c_inventory_quantity, t.inventory_quantity AS t_inventory_quantity,
           c.inventory_policy AS c_inventory_policy, t.inventory_policy AS t_inventory_policy,
           c.retail_price AS c_retail_price, t.retail_price AS t_retail_price,
           c.cost_price AS c_cost_price, t.cost_price AS t_cost_price,
           c.compare_at_price AS c_compare_at_price, t.compare_at_price AS t_compare_at_price,
           c.grams AS c_grams, t.grams AS t_grams,
           c.mpn AS c_mpn, t.mpn AS t_mpn,
           c.external_group_id AS c_external_group_id, t.external_group_id AS t_external_group_id,
           c.options AS c_options, t.options AS t_options,
           c.images AS c_images, t.images AS t_images,
           c.extra AS c_extra, t.extra AS t_extra,
           c.currency AS c_currency, t.currency AS t_currency
    FROM pull_staging s
    LEFT JOIN sec c
        ON c.external_id = CASE WHEN $3::boolean THEN s.vendor_sku ELSE s.external_id END
    LEFT JOIN inventory_feed_variants t
        ON t.inventory_feed_id = $1 AND t.external_id = s.external_id
), upd AS (
    UPDATE pull_staging s SET
    vendor_sku = CASE WHEN ($2::int & {bit.vendor_sku}) = 0 THEN s.vendor_sku WHEN j.matched THEN j.c_vendor_sku
                      WHEN j.stored THEN j.t_vendor_sku ELSE s.vendor_sku END,
    barcode = CASE WHEN ($2::int & {bit.barcode}) = 0 THEN s.barcode WHEN j.matched THEN j.c_barcode
                   WHEN j.stored THEN j.t_barcode ELSE s.barcode END,
    name = CASE WHEN ($2::int & {bit.name}) = 0 THEN s.name WHEN j.matched THEN j.c_name
                WHEN j.stored THEN j.t_name ELSE s.name END,
    inventory_quantity = CASE WHEN ($2::int & {bit.inventory_quantity}) = 0 THEN s.inventory_quantity WHEN j.matched THEN j.c_inventory_quantity
                              WHEN j.stored THEN j.t_inventory_quantity ELSE s.inventory_quantity END,
    inventory_policy = CASE WHEN ($2::int & {bit.inventory_policy}) = 0 THEN s.inventory_policy WHEN j.matched THEN j.c_inventory_policy
                            WHEN j.stored THEN j.t_inventory_policy ELSE s.inventory_policy END,
    retail_price = CASE WHEN ($2::int & {bit.retail_price}) = 0 THEN s.retail_price WHEN j.matched THEN j.c_retail_price
                        WHEN j.stored THEN j.t_retail_price ELSE s.retail_price END,
    cost_price = CASE WHEN ($2::int & {bit.cost_price}) = 0 THEN s.cost_price WHEN j.matched THEN j.c_cost_price
                      WHEN j.stored THEN j.t_cost_price ELSE s.cost_price END,
    compare_at_price = CASE WHEN ($2::int & {bit.compare_at_price}) = 0 THEN s.compare_at_price WHEN j.matched THEN j.c_compare_at_price
                            WHEN j.stored THEN j.t_compare_at_price ELSE s.compare_at_price END,
    grams = CASE WHEN ($2::int & {bit.grams}) = 0 THEN s.grams WHEN j.matched THEN j.c_grams
                 WHEN j.stored THEN j.t_grams ELSE s.grams END,
    mpn = CASE WHEN ($2::int & {bit.mpn}) = 0 THEN s.mpn WHEN j.matched THEN j.c_mpn
               WHEN j.stored THEN j.t_mpn ELSE s.mpn END,
    external_group_id = CASE WHEN ($2::int & {bit.external_group_id}) = 0 THEN s.external_group_id WHEN j.matched THEN j.c_external_group_id
                             WHEN j.stored THEN j.t_external_group_id ELSE s.external_group_id END,
    options = CASE WHEN ($2::int & {bit.options}) = 0 THEN s.options WHEN j.matched THEN j.c_options
                   WHEN j.stored THEN j.t_options ELSE s.options END,
    images = CASE WHEN ($2::int & {bit.images}) = 0 THEN s.images WHEN j.matched THEN j.c_images
                  WHEN j.stored THEN j.t_images ELSE s.images END,
    extra = CASE WHEN ($2::int & {bit.extra}) = 0 THEN s.extra WHEN j.matched THEN j.c_extra
                 WHEN j.stored THEN j.t_extra ELSE s.extra END,
    currency = CASE WHEN ($2::int & {bit.currency}) = 0 THEN s.currency WHEN j.matched THEN j.c_currency
                    WHEN j.stored THEN j.t_currency ELSE s.currency END
    FROM j WHERE s.ctid = j.sid
)
SELECT (SELECT count(*) FROM j WHERE matched) AS matched,
       (SELECT count(*) FROM j WHERE NOT matched) AS unmatched,
       (SELECT count(*) FROM sec c WHERE NOT EXISTS (
           SELECT 1 FROM pull_staging s
           WHERE c.external_id = CASE WHEN $3::boolean THEN s.vendor_sku
                                      ELSE s.external_id END)) AS unmatched_secondary
