-- Auto-connect, shared by the pull and push merges: feed items -> the store's variants.

-- name: links
-- A piece of a WITH list. It needs two relations before it:
--   cand (inventory_feed_id, external_id, vendor_sku, barcode): items that may connect
--        (new, or SKU/barcode changed, and not connected); best NOT MATERIALIZED, so that
--        the joins below read the merge's rows once, and only matches go further;
--   conf (inventory_feed_id, by_sku, by_barcode, prefix, prefix_only, fold,
--        may_be_linked): per feed (constants, for one feed, let the planner drop the
--        branches that cannot match); may_be_linked false: no item of the feed is linked
--        yet (a first import's), so none is looked for.
-- It gives `links` (inventory_feed_id, external_id, variant_id, vendor_sku, unique_match):
-- one row per candidate with a match; unique_match is false when the item matches several
-- store variants, or the variant matches several items of the feed (or one already linked).
-- SKUs compare trimmed (case-folded with fold); the provider's prefix is required with
-- prefix_only and optional otherwise. Barcodes compare as GTINs (leading zeros dropped)
-- and are tried only for items no SKU matched.
-- include: connect.sql:sku_hits
, code_hits AS (
    SELECT c.inventory_feed_id, c.external_id, c.vendor_sku, v.id AS variant_id
    FROM cand c
    JOIN conf cf ON cf.inventory_feed_id = c.inventory_feed_id
    JOIN variants v ON feed_worker_gtin(v.barcode) = feed_worker_gtin(c.barcode)
    WHERE cf.by_barcode AND feed_worker_gtin(c.barcode) <> ''
      AND NOT EXISTS (SELECT 1 FROM sku_hits h
                      WHERE h.inventory_feed_id = c.inventory_feed_id
                        AND h.external_id = c.external_id)
),
-- include: connect.sql:hit_counts
, links AS MATERIALIZED (
    SELECT i.inventory_feed_id, i.external_id, i.variant_id, i.vendor_sku,
           i.n = 1 AND pv.n = 1 AND NOT EXISTS (
               SELECT 1 FROM inventory_feed_variants x
               WHERE x.variant_id = i.variant_id
                 AND x.inventory_feed_id = i.inventory_feed_id
                 -- (repeated as a filter of its own for a hashed plan, which cannot
                 -- use the condition above: it keeps the scan to the feeds at hand)
                 AND x.inventory_feed_id IN (SELECT inventory_feed_id FROM conf
                                             WHERE may_be_linked)) AS unique_match
    FROM per_item i
    JOIN per_variant pv
        ON pv.inventory_feed_id = i.inventory_feed_id AND pv.variant_id = i.variant_id
)

-- name: links__citus
-- As links; Citus plans no correlated subquery here: the NOT EXISTS are anti-joins.
-- include: connect.sql:sku_hits
, code_hits AS (
    SELECT c.inventory_feed_id, c.external_id, c.vendor_sku, v.id AS variant_id
    FROM cand c
    JOIN conf cf ON cf.inventory_feed_id = c.inventory_feed_id
    JOIN variants v ON feed_worker_gtin(v.barcode) = feed_worker_gtin(c.barcode)
    LEFT JOIN (SELECT DISTINCT inventory_feed_id, external_id FROM sku_hits) h
        ON h.inventory_feed_id = c.inventory_feed_id AND h.external_id = c.external_id
    WHERE cf.by_barcode AND feed_worker_gtin(c.barcode) <> '' AND h.external_id IS NULL
),
-- include: connect.sql:hit_counts
, linked_already AS MATERIALIZED (
    -- the store variants an item of the feed is linked to already
    SELECT DISTINCT x.inventory_feed_id, x.variant_id
    FROM inventory_feed_variants x
    JOIN per_variant pv
        ON pv.inventory_feed_id = x.inventory_feed_id AND pv.variant_id = x.variant_id
    WHERE x.inventory_feed_id IN (SELECT inventory_feed_id FROM conf WHERE may_be_linked)
), links AS MATERIALIZED (
    SELECT i.inventory_feed_id, i.external_id, i.variant_id, i.vendor_sku,
           i.n = 1 AND pv.n = 1 AND la.variant_id IS NULL AS unique_match
    FROM per_item i
    JOIN per_variant pv
        ON pv.inventory_feed_id = i.inventory_feed_id AND pv.variant_id = i.variant_id
    LEFT JOIN linked_already la
        ON la.inventory_feed_id = i.inventory_feed_id AND la.variant_id = i.variant_id
)

-- name: conf
-- A piece of a WITH list: the connecting settings of the feeds in `feeds (inventory_feed_id)`.
conf AS MATERIALIZED (
    SELECT f.id AS inventory_feed_id, f.automatically_connect AS by_sku,
           f.automatically_connect_by_barcode AS by_barcode,
           nullif(btrim(p.sku_prefix), '') AS prefix,
           f.automatically_connect_prefix = 'prefixOnly' AS prefix_only,
           f.case_insensitive_skus AS fold, true AS may_be_linked
    FROM inventory_feeds f
    JOIN dropship_providers p ON p.id = f.dropship_provider_id
    WHERE f.id IN (SELECT inventory_feed_id FROM feeds)
)

-- name: sku_hits
-- links' first pieces: `keys` (the SKUs a store variant may have for each candidate) and
-- `sku_hits` (the store variants they match).
keys AS NOT MATERIALIZED (
    -- the SKUs a store variant may have for the item: with the prefix, and without it
    SELECT c.inventory_feed_id, c.external_id, c.vendor_sku, cf.fold,
           cf.prefix || btrim(c.vendor_sku) AS key
    FROM cand c
    JOIN conf cf ON cf.inventory_feed_id = c.inventory_feed_id
    WHERE cf.by_sku AND cf.prefix IS NOT NULL AND btrim(c.vendor_sku) <> ''
    UNION ALL
    SELECT c.inventory_feed_id, c.external_id, c.vendor_sku, cf.fold, btrim(c.vendor_sku)
    FROM cand c
    JOIN conf cf ON cf.inventory_feed_id = c.inventory_feed_id
    WHERE cf.by_sku AND NOT cf.prefix_only AND btrim(c.vendor_sku) <> ''
), sku_hits AS MATERIALIZED (
    SELECT k.inventory_feed_id, k.external_id, k.vendor_sku, v.id AS variant_id
    FROM keys k JOIN variants v ON btrim(v.sku) = k.key
    WHERE NOT k.fold
    UNION ALL
    SELECT k.inventory_feed_id, k.external_id, k.vendor_sku, v.id
    FROM keys k JOIN variants v ON lower(btrim(v.sku)) = lower(k.key)
    WHERE k.fold
)

-- name: hit_counts
-- links' `hits` (SKU and barcode matches) counted per item and per store variant.
hits AS MATERIALIZED (
    -- distinct already: one row per key and variant, keys of an item differ (prefix or
    -- not), and barcodes are tried only for items without a SKU match
    SELECT * FROM sku_hits UNION ALL SELECT * FROM code_hits
), per_item AS (
    SELECT inventory_feed_id, external_id, min(vendor_sku) AS vendor_sku,
           min(variant_id) AS variant_id, count(*) AS n
    FROM hits GROUP BY inventory_feed_id, external_id
), per_variant AS (
    SELECT inventory_feed_id, variant_id, count(*) AS n
    FROM hits GROUP BY inventory_feed_id, variant_id
)
