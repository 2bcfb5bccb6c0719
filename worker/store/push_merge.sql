-- The push merge's statement, shared by its two endings in push.sql: counts per feed
-- (the consumer's groups) and an outcome per item (the HTTP API's synchronous groups).

-- name: body
-- A WITH list without its final SELECT; see push.sql's merge for what it does and its
-- parameters.
WITH runs AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[]) AS r (inventory_feed_id, run_id)
), joined AS MATERIALIZED (
    SELECT s.*, t.id AS target_id,
        t.inventory_quantity AS old_quantity, t.retail_price AS old_price,
        CASE WHEN s.present & {bit.inventory_quantity} = 0 OR t.inventory_quantity_override = 'manual'
             THEN t.inventory_quantity ELSE s.inventory_quantity END AS new_quantity,
        CASE WHEN s.present & {bit.retail_price} <> 0 THEN s.retail_price ELSE t.retail_price END AS new_price,
        coalesce(s.ordered_at < t.ordered_at,
                 s.inventory_updated_at < t.inventory_updated_at, false) AS stale,
        s.ordered_at IS NOT NULL AND t.id IS NOT NULL
            AND (t.ordered_at IS NULL OR s.ordered_at > t.ordered_at) AS newer,
        t.id IS NULL OR (t.variant_id IS NULL AND (
            (s.present & {bit.vendor_sku} <> 0 AND s.vendor_sku IS DISTINCT FROM t.vendor_sku)
            OR (s.present & {bit.barcode} <> 0 AND s.barcode IS DISTINCT FROM t.barcode))) AS rekeyed,
        t.id IS NOT NULL AND (t.missing_since IS NOT NULL OR (
            CASE WHEN s.present & {bit.vendor_sku} <> 0 THEN s.vendor_sku ELSE t.vendor_sku END,
            CASE WHEN s.present & {bit.barcode} <> 0 THEN s.barcode ELSE t.barcode END,
            CASE WHEN s.present & {bit.name} <> 0 THEN s.name ELSE t.name END,
            CASE WHEN s.present & {bit.inventory_quantity} = 0 OR t.inventory_quantity_override = 'manual'
                 THEN t.inventory_quantity ELSE s.inventory_quantity END,
            CASE WHEN s.present & {bit.inventory_policy} <> 0 THEN coalesce(s.inventory_policy, 'track')
                 ELSE t.inventory_policy END,
            CASE WHEN s.present & {bit.retail_price} <> 0 THEN s.retail_price ELSE t.retail_price END,
            CASE WHEN s.present & {bit.cost_price} <> 0 THEN s.cost_price ELSE t.cost_price END,
            CASE WHEN s.present & {bit.compare_at_price} <> 0 THEN s.compare_at_price ELSE t.compare_at_price END,
            CASE WHEN s.present & {bit.grams} <> 0 THEN coalesce(s.grams, 0) ELSE t.grams END,
            CASE WHEN s.present & {bit.mpn} <> 0 THEN s.mpn ELSE t.mpn END,
            CASE WHEN s.present & {bit.external_group_id} <> 0 THEN s.external_group_id ELSE t.external_group_id END,
            CASE WHEN s.present & {bit.options} <> 0 THEN coalesce(s.options, '[]') ELSE t.options END,
            CASE WHEN s.present & {bit.images} <> 0 THEN coalesce(s.images, '[]') ELSE t.images END,
            CASE WHEN s.present & {bit.extra} <> 0 THEN t.extra || coalesce(s.extra, '{}')
                 ELSE t.extra END,
            CASE WHEN s.present & {bit.currency} <> 0 THEN s.currency ELSE t.currency END
        ) IS DISTINCT FROM (
            t.vendor_sku, t.barcode, t.name, t.inventory_quantity, t.inventory_policy,
            t.retail_price, t.cost_price, t.compare_at_price, t.grams, t.mpn,
            t.external_group_id, t.options, t.images, t.extra, t.currency
        -- A newer time alone is written too, so that an older update arriving later
        -- is still recognised as stale.
        ) OR coalesce(s.inventory_updated_at > t.inventory_updated_at, false)) AS changed
    FROM push_staging s
    LEFT JOIN inventory_feed_variants t
        ON t.inventory_feed_id = s.inventory_feed_id AND t.external_id = s.external_id
),
-- include: push_merge.sql:limits
, feeds AS (
    SELECT inventory_feed_id FROM runs
),
-- include: connect.sql:conf
, cand AS NOT MATERIALIZED (
    SELECT inventory_feed_id, external_id, vendor_sku, barcode FROM todo WHERE rekeyed
),
-- include: connect.sql:links
, ins AS (
    INSERT INTO inventory_feed_variants (
        inventory_feed_id, external_id, vendor_sku, barcode, name, inventory_quantity,
        inventory_policy, retail_price, cost_price, compare_at_price, grams, mpn,
        external_group_id, options, images, extra, currency, variant_id, inventory_updated_at,
        ordered_at)
    SELECT j.inventory_feed_id, j.external_id, j.vendor_sku, j.barcode, j.name,
           j.inventory_quantity, coalesce(j.inventory_policy, 'track'), j.retail_price,
           j.cost_price, j.compare_at_price, coalesce(j.grams, 0), j.mpn, j.external_group_id,
           coalesce(j.options, '[]'), coalesce(j.images, '[]'), coalesce(j.extra, '{}'),
           j.currency, l.variant_id, coalesce(j.inventory_updated_at, now()), j.ordered_at
    FROM todo j
    LEFT JOIN links l ON l.inventory_feed_id = j.inventory_feed_id
                     AND l.external_id = j.external_id AND l.unique_match
    WHERE j.target_id IS NULL
    ORDER BY j.inventory_feed_id, j.external_id
), upd AS (
    UPDATE inventory_feed_variants t SET
        vendor_sku = CASE WHEN j.present & {bit.vendor_sku} <> 0 THEN j.vendor_sku ELSE t.vendor_sku END,
        barcode = CASE WHEN j.present & {bit.barcode} <> 0 THEN j.barcode ELSE t.barcode END,
        name = CASE WHEN j.present & {bit.name} <> 0 THEN j.name ELSE t.name END,
        inventory_quantity = j.new_quantity,
        inventory_policy = CASE WHEN j.present & {bit.inventory_policy} <> 0 THEN coalesce(j.inventory_policy, 'track')
                                ELSE t.inventory_policy END,
        retail_price = j.new_price,
        cost_price = CASE WHEN j.present & {bit.cost_price} <> 0 THEN j.cost_price ELSE t.cost_price END,
        compare_at_price = CASE WHEN j.present & {bit.compare_at_price} <> 0 THEN j.compare_at_price
                                ELSE t.compare_at_price END,
        grams = CASE WHEN j.present & {bit.grams} <> 0 THEN coalesce(j.grams, 0) ELSE t.grams END,
        mpn = CASE WHEN j.present & {bit.mpn} <> 0 THEN j.mpn ELSE t.mpn END,
        external_group_id = CASE WHEN j.present & {bit.external_group_id} <> 0 THEN j.external_group_id
                                 ELSE t.external_group_id END,
        options = CASE WHEN j.present & {bit.options} <> 0 THEN coalesce(j.options, '[]') ELSE t.options END,
        images = CASE WHEN j.present & {bit.images} <> 0 THEN coalesce(j.images, '[]') ELSE t.images END,
        extra = CASE WHEN j.present & {bit.extra} <> 0 THEN t.extra || coalesce(j.extra, '{}')
                     ELSE t.extra END,
        currency = CASE WHEN j.present & {bit.currency} <> 0 THEN j.currency ELSE t.currency END,
        variant_id = coalesce(t.variant_id, l.variant_id),
        missing_since = NULL,
        inventory_updated_at = coalesce(
            j.inventory_updated_at,
            CASE WHEN j.new_quantity IS DISTINCT FROM t.inventory_quantity
                 THEN n.now ELSE t.inventory_updated_at END),
        ordered_at = greatest(t.ordered_at, j.ordered_at),
        updated_at = CASE WHEN j.changed THEN n.now ELSE t.updated_at END
    -- (now() as a column, not a call in the CASEs: Citus needs that)
    FROM todo j
    CROSS JOIN (SELECT now() AS now) n
    LEFT JOIN links l ON l.inventory_feed_id = j.inventory_feed_id
                     AND l.external_id = j.external_id AND l.unique_match
    WHERE t.id = j.target_id
), hist AS (
    INSERT INTO variant_inventory_updates (
        inventory_feed_variant_id, inventory_feed_id, run_id, action_type,
        old_quantity, new_quantity, old_retail_price, new_retail_price)
    SELECT j.target_id, j.inventory_feed_id, r.run_id, 'update', j.old_quantity,
           j.new_quantity, j.old_price, j.new_price
    FROM todo j JOIN runs r ON r.inventory_feed_id = j.inventory_feed_id
    WHERE $3::boolean AND j.target_id IS NOT NULL
      AND (j.old_quantity IS DISTINCT FROM j.new_quantity
           OR j.old_price IS DISTINCT FROM j.new_price)
), daily AS (
    INSERT INTO provider_daily_items (dropship_provider_id, day, inventory_feed_id, external_id)
    SELECT provider_id, $6::date, inventory_feed_id, external_id FROM fresh WHERE n <= remaining
), held_rejects AS (
    -- Kept whole (as a feed-update variant) so that they can be applied on a later day.
-- include: push_merge.sql:held_rejects
)


-- name: limits
-- The daily SKU limit's pieces of the WITH list: `fresh` (writes of items their provider
-- has not written today, in key order), `held` (those over the limit), `todo` (what is
-- written).
fresh AS MATERIALIZED (
    SELECT j.inventory_feed_id, j.external_id, a.provider_id,
           row_number() OVER (PARTITION BY a.provider_id
                              ORDER BY j.inventory_feed_id, j.external_id) AS n,
           a.remaining
    FROM joined j
    JOIN inventory_feeds f ON f.id = j.inventory_feed_id
    JOIN unnest($4::bigint[], $5::int[]) AS a (provider_id, remaining)
        ON a.provider_id = f.dropship_provider_id
    WHERE (j.target_id IS NULL OR (j.changed AND NOT j.stale))
      AND NOT EXISTS (SELECT 1 FROM provider_daily_items d
                      WHERE d.dropship_provider_id = a.provider_id AND d.day = $6::date
                        AND d.inventory_feed_id = j.inventory_feed_id
                        AND d.external_id = j.external_id)
), held AS MATERIALIZED (
    SELECT inventory_feed_id, external_id FROM fresh WHERE n > remaining
), todo AS NOT MATERIALIZED (
    SELECT j.* FROM joined j
    WHERE (j.target_id IS NULL OR ((j.changed OR j.newer) AND NOT j.stale))
      AND NOT EXISTS (SELECT 1 FROM held h WHERE h.inventory_feed_id = j.inventory_feed_id
                                            AND h.external_id = j.external_id)
)

-- name: limits__citus
-- As limits; Citus plans no correlated subquery here: the NOT EXISTS are anti-joins. Its
-- intermediate results type every column of a two-array unnest as the first array's
-- element: both arrays are bigint[] here.
fresh AS MATERIALIZED (
    SELECT j.inventory_feed_id, j.external_id, a.provider_id,
           row_number() OVER (PARTITION BY a.provider_id
                              ORDER BY j.inventory_feed_id, j.external_id) AS n,
           a.remaining
    FROM joined j
    JOIN inventory_feeds f ON f.id = j.inventory_feed_id
    JOIN unnest($4::bigint[], $5::bigint[]) AS a (provider_id, remaining)
        ON a.provider_id = f.dropship_provider_id
    LEFT JOIN (SELECT dropship_provider_id, inventory_feed_id, external_id
               FROM provider_daily_items
               WHERE day = $6::date AND inventory_feed_id = ANY($1::bigint[])) d
        ON d.dropship_provider_id = a.provider_id
       AND d.inventory_feed_id = j.inventory_feed_id AND d.external_id = j.external_id
    WHERE (j.target_id IS NULL OR (j.changed AND NOT j.stale)) AND d.external_id IS NULL
), held AS MATERIALIZED (
    SELECT inventory_feed_id, external_id FROM fresh WHERE n > remaining
), todo AS NOT MATERIALIZED (
    SELECT j.* FROM joined j
    LEFT JOIN held h
        ON h.inventory_feed_id = j.inventory_feed_id AND h.external_id = j.external_id
    WHERE (j.target_id IS NULL OR ((j.changed OR j.newer) AND NOT j.stale))
      AND h.external_id IS NULL
)

-- name: held_rejects
INSERT INTO feed_run_rejects (run_id, position, raw, reason)
SELECT r.run_id, 0,
-- include: items.sql:held_variant
     , 'daily limit'
FROM held h
JOIN joined j ON j.inventory_feed_id = h.inventory_feed_id AND j.external_id = h.external_id
JOIN runs r ON r.inventory_feed_id = h.inventory_feed_id

-- name: held_rejects__citus
-- (a reject names its feed on a Citus cluster: its shard)
INSERT INTO feed_run_rejects (run_id, inventory_feed_id, position, raw, reason)
SELECT r.run_id, h.inventory_feed_id, 0,
-- include: items.sql:held_variant
     , 'daily limit'
FROM held h
JOIN joined j ON j.inventory_feed_id = h.inventory_feed_id AND j.external_id = h.external_id
JOIN runs r ON r.inventory_feed_id = h.inventory_feed_id
