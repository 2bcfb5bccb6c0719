-- The pieces the pull's queries share: its two merges (pull.sql: merge, merge_seen), in
-- order, and the loads of a feed's fingerprints.

-- name: known_items
-- The feed's available items for a refresh that leaves out unchanged rows: id,
-- fingerprint (0 when none), whether it has none, quantity when tracked and positive.
SELECT id, coalesce(fingerprint, 0), fingerprint IS NULL,
       CASE WHEN inventory_policy = 'track' AND inventory_quantity > 0
            THEN inventory_quantity ELSE 0 END
FROM inventory_feed_variants
WHERE inventory_feed_id = $1 AND missing_since IS NULL

-- name: merge_src
-- The file's rows, one per key: the last occurrence in the file wins.
src AS (
-- include: pull_merge.sql:src_rows
    FROM pull_staging
    ORDER BY external_id, pos DESC
)

-- name: src_rows
-- The staged rows' columns, one row per key (its FROM and ORDER BY follow).
    SELECT DISTINCT ON (external_id)
        pos, external_id, vendor_sku, barcode, name, inventory_quantity, inventory_policy,
        retail_price, cost_price, compare_at_price, grams, mpn, external_group_id,
        options, images, extra, currency, fingerprint

-- name: merge_paired
    -- Each file row with the item it updates, if any, the quantity and price it will have,
    -- and whether any mapped column of that item changes (merge: and, external_id NULL,
    -- each of the feed's items that the file no longer has: the items are read once).
    SELECT s.*, t.id AS target_id, t.missing_since, t.fingerprint AS old_fingerprint,
        t.inventory_quantity_override = 'manual' AS old_manual,
        t.inventory_quantity AS old_quantity, t.retail_price AS old_price,
        t.inventory_policy AS old_policy,
        CASE WHEN ($2::int & {bit.inventory_policy}) <> 0 OR t.id IS NULL THEN coalesce(s.inventory_policy, 'track')
             ELSE t.inventory_policy END AS new_policy,
        CASE WHEN ($2::int & {bit.inventory_quantity}) = 0 OR t.inventory_quantity_override = 'manual'
             THEN t.inventory_quantity ELSE s.inventory_quantity END AS new_quantity,
        CASE WHEN ($2::int & {bit.retail_price}) <> 0 THEN s.retail_price ELSE t.retail_price END AS new_price,
        -- may connect: new, or not connected and its SKU or barcode changes
        t.id IS NULL OR (t.variant_id IS NULL AND (
            (($2::int & {bit.vendor_sku}) <> 0 AND s.vendor_sku IS DISTINCT FROM t.vendor_sku)
            OR (($2::int & {bit.barcode}) <> 0 AND s.barcode IS DISTINCT FROM t.barcode))) AS rekeyed,
        t.id IS NOT NULL AND (t.missing_since IS NOT NULL OR (
            CASE WHEN ($2::int & {bit.vendor_sku}) <> 0 THEN s.vendor_sku ELSE t.vendor_sku END,
            CASE WHEN ($2::int & {bit.barcode}) <> 0 THEN s.barcode ELSE t.barcode END,
            CASE WHEN ($2::int & {bit.name}) <> 0 THEN s.name ELSE t.name END,
            CASE WHEN ($2::int & {bit.inventory_quantity}) = 0 OR t.inventory_quantity_override = 'manual'
                 THEN t.inventory_quantity ELSE s.inventory_quantity END,
            CASE WHEN ($2::int & {bit.inventory_policy}) <> 0 THEN coalesce(s.inventory_policy, 'track')
                 ELSE t.inventory_policy END,
            CASE WHEN ($2::int & {bit.retail_price}) <> 0 THEN s.retail_price ELSE t.retail_price END,
            CASE WHEN ($2::int & {bit.cost_price}) <> 0 THEN s.cost_price ELSE t.cost_price END,
            CASE WHEN ($2::int & {bit.compare_at_price}) <> 0 THEN s.compare_at_price ELSE t.compare_at_price END,
            CASE WHEN ($2::int & {bit.grams}) <> 0 THEN coalesce(s.grams, 0) ELSE t.grams END,
            CASE WHEN ($2::int & {bit.mpn}) <> 0 THEN s.mpn ELSE t.mpn END,
            CASE WHEN ($2::int & {bit.external_group_id}) <> 0 THEN s.external_group_id ELSE t.external_group_id END,
            CASE WHEN ($2::int & {bit.options}) <> 0 THEN coalesce(s.options, '[]') ELSE t.options END,
            CASE WHEN ($2::int & {bit.images}) <> 0 THEN coalesce(s.images, '[]') ELSE t.images END,
            CASE WHEN ($2::int & {bit.extra}) <> 0 THEN coalesce(s.extra, '{}') ELSE t.extra END,
            CASE WHEN ($2::int & {bit.currency}) <> 0 THEN s.currency ELSE t.currency END
        ) IS DISTINCT FROM (
            t.vendor_sku, t.barcode, t.name, t.inventory_quantity, t.inventory_policy,
            t.retail_price, t.cost_price, t.compare_at_price, t.grams, t.mpn,
            t.external_group_id, t.options, t.images, t.extra, t.currency
        )) AS changed

-- name: merge_middle
joined AS NOT MATERIALIZED (
    SELECT * FROM paired WHERE external_id IS NOT NULL
),
-- include: pull_merge.sql:merge_rules

-- name: merge_rules
-- After `joined` (the file's rows with their items): the daily limit's pieces, connecting
-- (`links`) and the pull's order time.
-- include: pull_merge.sql:limits
, conf AS NOT MATERIALIZED (
    -- the feed's connecting settings, as constants of the plan
    SELECT $1::bigint AS inventory_feed_id, $9::boolean AS by_sku,
           $10::boolean AS by_barcode, $11::text AS prefix, $12::boolean AS prefix_only,
           $13::boolean AS fold, true AS may_be_linked
), cand AS NOT MATERIALIZED (
    -- (items the daily limit holds back may match too: they are not written, so neither
    -- is their link, and they are not counted as connected)
    SELECT $1::bigint AS inventory_feed_id, external_id, vendor_sku, barcode
    FROM joined WHERE rekeyed AND (target_id IS NULL OR changed)
),
-- include: connect.sql:links
, pulled AS MATERIALIZED (
    -- The order time of what this pull writes: when the run started (a push the worker
    -- received later is newer than the file; one older than it is stale after it).
    SELECT coalesce((SELECT started_at FROM feed_runs WHERE id = $3::bigint), now()) AS at,
           now() AS now  -- (a column, not a call in the updates' CASEs: Citus needs that)
)

-- name: probe_by_key
    -- one probe of the feed's key index per row, whatever the planner's estimates (the
    -- LIMIT keeps the subquery from being flattened into a join it could plan otherwise)
    LEFT JOIN LATERAL (
        SELECT * FROM inventory_feed_variants t
        WHERE t.inventory_feed_id = $1 AND t.external_id = s.external_id LIMIT 1) t ON true

-- name: unseen_missing
    -- Cleanup: the unseen items (pull_unseen) that no row of the file matched (NOT IN over
    -- a subquery: one hash of the matched ids, whatever the estimates), each read by its id.
    SELECT t.id, t.inventory_quantity, t.inventory_policy, t.retail_price,
           CASE WHEN t.inventory_quantity_override = 'manual' THEN t.inventory_quantity
                ELSE 0 END AS new_quantity
    FROM pull_unseen u
    CROSS JOIN LATERAL (
        SELECT * FROM inventory_feed_variants t WHERE t.id = u.id LIMIT 1) t
    WHERE $4::boolean AND u.id NOT IN (SELECT target_id FROM paired WHERE target_id IS NOT NULL)
      AND t.inventory_feed_id = $1 AND t.missing_since IS NULL

-- name: limits
-- The daily SKU limit's pieces of the WITH list: `fresh` (the writes of items not yet
-- written today, in file order), `held` (those over the limit), `todo` (what is written:
-- every new or changed row but those the daily limit holds back).
fresh AS MATERIALIZED (
    -- Daily SKU limit: the writes of items not yet written today, in file order.
    SELECT j.external_id, j.pos, j.target_id IS NULL AS is_new,
           row_number() OVER (ORDER BY j.pos) AS n
    FROM joined j
    WHERE $6::int IS NOT NULL AND (j.target_id IS NULL OR j.changed)
      AND NOT EXISTS (SELECT 1 FROM provider_daily_items d
                      WHERE d.dropship_provider_id = $7::bigint AND d.day = $8::date
                        AND d.inventory_feed_id = $1 AND d.external_id = j.external_id)
), held AS MATERIALIZED (
    SELECT external_id, pos, is_new FROM fresh WHERE n > $6::int
), todo AS NOT MATERIALIZED (
    -- What is written: every new or changed row but those the daily limit holds back.
    SELECT j.* FROM joined j
    WHERE (j.target_id IS NULL OR j.changed)
      AND NOT EXISTS (SELECT 1 FROM held h WHERE h.external_id = j.external_id)
)

-- name: limits__citus
-- As limits; Citus plans no correlated subquery here: the NOT EXISTS are anti-joins.
fresh AS MATERIALIZED (
    -- Daily SKU limit: the writes of items not yet written today, in file order.
    SELECT j.external_id, j.pos, j.target_id IS NULL AS is_new,
           row_number() OVER (ORDER BY j.pos) AS n
    FROM joined j
    LEFT JOIN (SELECT external_id FROM provider_daily_items
               WHERE dropship_provider_id = $7::bigint AND day = $8::date
                 AND inventory_feed_id = $1) d ON d.external_id = j.external_id
    WHERE $6::int IS NOT NULL AND (j.target_id IS NULL OR j.changed)
      AND d.external_id IS NULL
), held AS MATERIALIZED (
    SELECT external_id, pos, is_new FROM fresh WHERE n > $6::int
), todo AS NOT MATERIALIZED (
    -- What is written: every new or changed row but those the daily limit holds back.
    SELECT j.* FROM joined j
    LEFT JOIN held h ON h.external_id = j.external_id
    WHERE (j.target_id IS NULL OR j.changed) AND h.external_id IS NULL
)

-- name: merge_tail
ins AS (
    INSERT INTO inventory_feed_variants (
        inventory_feed_id, external_id, vendor_sku, barcode, name, inventory_quantity,
        inventory_policy, retail_price, cost_price, compare_at_price, grams, mpn,
        external_group_id, options, images, extra, currency, variant_id,
        inventory_updated_at, last_fetched_at, ordered_at, fingerprint)
    SELECT $1, j.external_id, j.vendor_sku, j.barcode, j.name, j.inventory_quantity,
           coalesce(j.inventory_policy, 'track'), j.retail_price, j.cost_price,
           j.compare_at_price, coalesce(j.grams, 0), j.mpn, j.external_group_id,
           coalesce(j.options, '[]'), coalesce(j.images, '[]'), coalesce(j.extra, '{}'),
           j.currency, l.variant_id, now(), now(), p.at,
           CASE WHEN $14::boolean THEN j.fingerprint END
    FROM todo j
    CROSS JOIN pulled p
    LEFT JOIN links l ON l.external_id = j.external_id AND l.unique_match
    -- In key order without a sort: `paired` comes out of a join on external_id and
    -- the hash joins above keep that order (an insert into the unique index in key order
    -- writes less than one in file order).
    WHERE j.target_id IS NULL
), upd AS (
    UPDATE inventory_feed_variants t SET
        vendor_sku = CASE WHEN ($2::int & {bit.vendor_sku}) <> 0 THEN j.vendor_sku ELSE t.vendor_sku END,
        barcode = CASE WHEN ($2::int & {bit.barcode}) <> 0 THEN j.barcode ELSE t.barcode END,
        name = CASE WHEN ($2::int & {bit.name}) <> 0 THEN j.name ELSE t.name END,
        inventory_quantity = j.new_quantity,
        inventory_policy = CASE WHEN ($2::int & {bit.inventory_policy}) <> 0 THEN coalesce(j.inventory_policy, 'track')
                                ELSE t.inventory_policy END,
        retail_price = j.new_price,
        cost_price = CASE WHEN ($2::int & {bit.cost_price}) <> 0 THEN j.cost_price ELSE t.cost_price END,
        compare_at_price = CASE WHEN ($2::int & {bit.compare_at_price}) <> 0 THEN j.compare_at_price
                                ELSE t.compare_at_price END,
        grams = CASE WHEN ($2::int & {bit.grams}) <> 0 THEN coalesce(j.grams, 0) ELSE t.grams END,
        mpn = CASE WHEN ($2::int & {bit.mpn}) <> 0 THEN j.mpn ELSE t.mpn END,
        external_group_id = CASE WHEN ($2::int & {bit.external_group_id}) <> 0 THEN j.external_group_id
                                 ELSE t.external_group_id END,
        options = CASE WHEN ($2::int & {bit.options}) <> 0 THEN coalesce(j.options, '[]') ELSE t.options END,
        images = CASE WHEN ($2::int & {bit.images}) <> 0 THEN coalesce(j.images, '[]') ELSE t.images END,
        extra = CASE WHEN ($2::int & {bit.extra}) <> 0 THEN coalesce(j.extra, '{}') ELSE t.extra END,
        currency = CASE WHEN ($2::int & {bit.currency}) <> 0 THEN j.currency ELSE t.currency END,
        variant_id = coalesce(t.variant_id, l.variant_id),
        missing_since = NULL,
        inventory_updated_at = CASE WHEN j.new_quantity IS DISTINCT FROM t.inventory_quantity
                                    THEN p.now ELSE t.inventory_updated_at END,
        last_fetched_at = now(), updated_at = now(),
        ordered_at = greatest(t.ordered_at, p.at),
        fingerprint = CASE WHEN $14::boolean THEN j.fingerprint END
    FROM todo j
    CROSS JOIN pulled p
    LEFT JOIN links l ON l.external_id = j.external_id AND l.unique_match
    WHERE t.id = j.target_id AND t.inventory_feed_id = $1
-- include: pull_merge.sql:by_ids_written
), settle AS (
    -- An unchanged item whose text differs from the one it was written from (no
    -- fingerprint yet, "1.0" for 1, a new mapping of the same values): the new text's
    -- fingerprint, so that the next refresh leaves the row out. Nothing else changes.
    UPDATE inventory_feed_variants t SET fingerprint = j.fingerprint
    FROM joined j
    WHERE $14::boolean AND j.target_id IS NOT NULL AND NOT j.changed
      AND j.fingerprint IS DISTINCT FROM j.old_fingerprint
      AND t.id = j.target_id AND t.inventory_feed_id = $1
-- include: pull_merge.sql:by_ids_settled
), zero AS (
    UPDATE inventory_feed_variants t SET
        inventory_quantity = m.new_quantity, missing_since = now(),
        inventory_updated_at = CASE WHEN m.new_quantity IS DISTINCT FROM t.inventory_quantity
                                    THEN p.now ELSE t.inventory_updated_at END,
        updated_at = now(), ordered_at = greatest(t.ordered_at, p.at)
    FROM missing m
    CROSS JOIN pulled p
    WHERE t.id = m.id AND t.inventory_feed_id = $1
-- include: pull_merge.sql:by_ids_missing
), hist AS (
    INSERT INTO variant_inventory_updates (
        inventory_feed_variant_id, inventory_feed_id, run_id, action_type,
        old_quantity, new_quantity, old_retail_price, new_retail_price)
    SELECT target_id, $1, $3::bigint, 'update', old_quantity, new_quantity, old_price, new_price
    FROM todo
    WHERE $5::boolean AND target_id IS NOT NULL
      AND (old_quantity IS DISTINCT FROM new_quantity OR old_price IS DISTINCT FROM new_price)
    UNION ALL
    SELECT id, $1, $3::bigint, 'cleanup', inventory_quantity, new_quantity, retail_price, retail_price
    FROM missing
    WHERE $5::boolean AND inventory_quantity IS DISTINCT FROM new_quantity
), daily AS (
    INSERT INTO provider_daily_items (dropship_provider_id, day, inventory_feed_id, external_id)
    SELECT $7::bigint, $8::date, $1, f.external_id FROM fresh f WHERE f.n <= $6::int
), held_rejects AS (
    -- Kept whole (as a feed-update variant) so that they can be applied on a later day.
-- include: pull_merge.sql:held_rejects
)
-- The writes run whether or not they are read; their counts follow from the CTEs (the
-- feed's lock keeps anyone else from changing its rows meanwhile).
SELECT count(*) AS distinct_rows,
       count(*) FILTER (WHERE j.target_id IS NULL)
           - (SELECT count(*) FROM held WHERE is_new) AS inserted,
       count(*) FILTER (WHERE j.changed)
           - (SELECT count(*) FROM held WHERE NOT is_new) AS updated,
       (SELECT count(*) FROM held) AS held,
       (SELECT count(*) FROM missing) AS zeroed,
       (SELECT count(*) FROM links WHERE unique_match
          AND external_id NOT IN (SELECT external_id FROM held)) AS connected,
       (SELECT count(*) FROM links WHERE NOT unique_match) AS ambiguous,
       (SELECT array_agg(vendor_sku ORDER BY vendor_sku) FROM (
           SELECT DISTINCT vendor_sku FROM links WHERE NOT unique_match
           ORDER BY vendor_sku LIMIT 20) a) AS ambiguous_skus,
       -- for the circuit breaker: the feed's available items and tracked stock, before/after
       count(*) FILTER (WHERE j.target_id IS NOT NULL AND j.missing_since IS NULL)
           + (SELECT count(*) FROM missing) AS items_before,
       coalesce(sum(j.old_quantity) FILTER (WHERE j.target_id IS NOT NULL
                AND j.missing_since IS NULL AND j.old_policy = 'track'
                AND j.old_quantity > 0), 0)
           + (SELECT coalesce(sum(inventory_quantity) FILTER (WHERE inventory_policy = 'track'
                                  AND inventory_quantity > 0), 0) FROM missing)
           AS stock_before,
       coalesce(sum(j.new_quantity) FILTER (WHERE j.new_policy = 'track'
                AND j.new_quantity > 0), 0)
           + (SELECT coalesce(sum(new_quantity) FILTER (WHERE inventory_policy = 'track'
                                  AND new_quantity > 0), 0) FROM missing)
           AS stock_after,
       -- merge_seen: the available items the file's rows matched that were not among the
       -- unseen ones: a dropped row may stand for them too (fingerprints.overlap); as a
       -- rule none
       CASE WHEN $15::boolean THEN (
           SELECT array_agg(target_id) FROM joined
           WHERE target_id IS NOT NULL AND missing_since IS NULL
             AND target_id NOT IN (SELECT id FROM pull_unseen)) END AS matched_ids
FROM joined j;


-- name: held_rejects
INSERT INTO feed_run_rejects (run_id, position, raw, reason)
SELECT $3::bigint, j.pos,
-- include: items.sql:held_variant
     , 'daily limit'
FROM held h JOIN (SELECT *, $2::int AS present FROM joined) j
    ON j.external_id = h.external_id
WHERE $3::bigint IS NOT NULL

-- name: held_rejects__citus
-- (a reject names its feed on a Citus cluster: its shard)
INSERT INTO feed_run_rejects (run_id, inventory_feed_id, position, raw, reason)
SELECT $3::bigint, $1::bigint, j.pos,
-- include: items.sql:held_variant
     , 'daily limit'
FROM held h JOIN (SELECT *, $2::int AS present FROM joined) j
    ON j.external_id = h.external_id
WHERE $3::bigint IS NOT NULL


-- name: by_ids_written
-- The items the merge writes are read by their ids (one probe of the primary key each),
-- not found by a join that reads all of the feed's items: a refresh writes a few percent
-- of them, and a large merge is planned without nested loops.
      AND t.id = ANY (ARRAY(SELECT target_id FROM todo WHERE target_id IS NOT NULL))

-- name: by_ids_written__citus
-- (none on a Citus cluster: with the array of ids, a refresh of 1M items ran for more than
-- ten minutes on the workers, against half a minute with the join alone)
      AND true

-- name: by_ids_settled
      AND t.id = ANY (ARRAY(SELECT target_id FROM joined WHERE $14::boolean
                            AND target_id IS NOT NULL AND NOT changed
                            AND fingerprint IS DISTINCT FROM old_fingerprint))

-- name: by_ids_settled__citus
      AND true

-- name: by_ids_missing
      AND t.id = ANY (ARRAY(SELECT id FROM missing))

-- name: by_ids_missing__citus
      AND true
