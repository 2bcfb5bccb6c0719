-- The bulk core of a pull: COPY into a temp staging table, then one set-based merge.

-- name: create_staging
-- Text columns, filled in file order (pos); blanks are read as NULL and cast by the merge.
CREATE TEMP TABLE pull_staging (
    pos                bigint GENERATED ALWAYS AS IDENTITY,
    external_id        text COLLATE "C" NOT NULL,
    vendor_sku         text,
    barcode            text,
    name               text,
    inventory_quantity text,
    inventory_policy   text,
    retail_price       text,
    cost_price         text,
    compare_at_price   text,
    grams              text,
    mpn                text,
    external_group_id  text,
    options            text,
    images             text,
    extra              text
) ON COMMIT DROP;

-- name: analyze_staging
ANALYZE pull_staging;

-- name: merge_settings
SELECT set_config('work_mem', $1, true), set_config('plan_cache_mode', 'force_custom_plan', true);

-- name: lock_feed
SELECT pg_advisory_xact_lock($1::int, $2::int);

-- name: merge
-- $1 feed id; $2 bit mask of the columns the feed maps (bit n = n-th column after
-- external_id, see worker/mapping.py COLUMNS); unmapped columns keep their stored values.
-- Duplicates: the last occurrence in the file wins. Unchanged rows are not written.
WITH src AS (
    SELECT DISTINCT ON (external_id)
        external_id,
        nullif(vendor_sku, '') AS vendor_sku,
        nullif(barcode, '') AS barcode,
        nullif(name, '') AS name,
        nullif(inventory_quantity, '')::integer AS inventory_quantity,
        nullif(inventory_policy, '') AS inventory_policy,
        nullif(retail_price, '')::numeric AS retail_price,
        nullif(cost_price, '')::numeric AS cost_price,
        nullif(compare_at_price, '')::numeric AS compare_at_price,
        nullif(grams, '')::numeric AS grams,
        nullif(mpn, '') AS mpn,
        nullif(external_group_id, '') AS external_group_id,
        nullif(options, '')::jsonb AS options,
        nullif(images, '')::jsonb AS images,
        nullif(extra, '')::jsonb AS extra
    FROM pull_staging
    ORDER BY external_id, pos DESC
), joined AS MATERIALIZED (
    SELECT
        t.id AS target_id,
        s.external_id,
        CASE WHEN ($2::int & 1) <> 0 THEN s.vendor_sku ELSE t.vendor_sku END AS vendor_sku,
        CASE WHEN ($2::int & 2) <> 0 THEN s.barcode ELSE t.barcode END AS barcode,
        CASE WHEN ($2::int & 4) <> 0 THEN s.name ELSE t.name END AS name,
        CASE WHEN ($2::int & 8) <> 0 THEN s.inventory_quantity
             ELSE t.inventory_quantity END AS inventory_quantity,
        CASE WHEN ($2::int & 16) <> 0 THEN coalesce(s.inventory_policy, 'track')
             ELSE coalesce(t.inventory_policy, 'track') END AS inventory_policy,
        CASE WHEN ($2::int & 32) <> 0 THEN s.retail_price ELSE t.retail_price END AS retail_price,
        CASE WHEN ($2::int & 64) <> 0 THEN s.cost_price ELSE t.cost_price END AS cost_price,
        CASE WHEN ($2::int & 128) <> 0 THEN s.compare_at_price
             ELSE t.compare_at_price END AS compare_at_price,
        CASE WHEN ($2::int & 256) <> 0 THEN coalesce(s.grams, 0)
             ELSE coalesce(t.grams, 0) END AS grams,
        CASE WHEN ($2::int & 512) <> 0 THEN s.mpn ELSE t.mpn END AS mpn,
        CASE WHEN ($2::int & 1024) <> 0 THEN s.external_group_id
             ELSE t.external_group_id END AS external_group_id,
        CASE WHEN ($2::int & 2048) <> 0 THEN coalesce(s.options, '[]')
             ELSE coalesce(t.options, '[]') END AS options,
        CASE WHEN ($2::int & 4096) <> 0 THEN coalesce(s.images, '[]')
             ELSE coalesce(t.images, '[]') END AS images,
        CASE WHEN ($2::int & 8192) <> 0 THEN coalesce(s.extra, '{}')
             ELSE coalesce(t.extra, '{}') END AS extra,
        t.inventory_quantity AS old_quantity,
        t.inventory_updated_at AS old_inventory_updated_at,
        (t.vendor_sku, t.barcode, t.name, t.inventory_quantity, t.inventory_policy,
         t.retail_price, t.cost_price, t.compare_at_price, t.grams, t.mpn,
         t.external_group_id, t.options, t.images, t.extra) AS old_row
    FROM src s
    LEFT JOIN inventory_feed_variants t
        ON t.inventory_feed_id = $1 AND t.external_id = s.external_id
), ins AS (
    INSERT INTO inventory_feed_variants (
        inventory_feed_id, external_id, vendor_sku, barcode, name, inventory_quantity,
        inventory_policy, retail_price, cost_price, compare_at_price, grams, mpn,
        external_group_id, options, images, extra, inventory_updated_at, last_fetched_at)
    SELECT $1, external_id, vendor_sku, barcode, name, inventory_quantity,
           inventory_policy, retail_price, cost_price, compare_at_price, grams, mpn,
           external_group_id, options, images, extra, now(), now()
    FROM joined
    WHERE target_id IS NULL
    RETURNING 1
), upd AS (
    UPDATE inventory_feed_variants t SET
        vendor_sku = j.vendor_sku, barcode = j.barcode, name = j.name,
        inventory_quantity = j.inventory_quantity, inventory_policy = j.inventory_policy,
        retail_price = j.retail_price, cost_price = j.cost_price,
        compare_at_price = j.compare_at_price, grams = j.grams, mpn = j.mpn,
        external_group_id = j.external_group_id, options = j.options, images = j.images,
        extra = j.extra,
        inventory_updated_at = CASE WHEN j.inventory_quantity IS DISTINCT FROM j.old_quantity
                                    THEN now() ELSE j.old_inventory_updated_at END,
        last_fetched_at = now(), updated_at = now()
    FROM joined j
    WHERE t.id = j.target_id
      AND (j.vendor_sku, j.barcode, j.name, j.inventory_quantity, j.inventory_policy,
           j.retail_price, j.cost_price, j.compare_at_price, j.grams, j.mpn,
           j.external_group_id, j.options, j.images, j.extra) IS DISTINCT FROM j.old_row
    RETURNING 1
)
SELECT (SELECT count(*) FROM joined) AS distinct_rows,
       (SELECT count(*) FROM ins) AS inserted,
       (SELECT count(*) FROM upd) AS updated;
