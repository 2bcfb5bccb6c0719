-- The bulk core of a pull: COPY into a temp staging table, then one set-based merge.

-- name: create_staging
-- Filled in file order (pos); blanks arrive as NULL (COPY ... NULL ''). The values were
-- checked by the mapper, so the casts of COPY cannot fail.
CREATE TEMP TABLE pull_staging (
    pos                bigint GENERATED ALWAYS AS IDENTITY,
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
    currency           text
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
-- New rows go in key order (a sorted insert into the unique index costs a third less).
WITH src AS (
    SELECT DISTINCT ON (external_id)
        external_id, vendor_sku, barcode, name, inventory_quantity, inventory_policy,
        retail_price, cost_price, compare_at_price, grams, mpn, external_group_id,
        options, images, extra, currency
    FROM pull_staging
    ORDER BY external_id, pos DESC
), joined AS MATERIALIZED (
    -- Each file row with the item it updates, if any, and whether any mapped column of
    -- that item changes (unmapped columns keep their stored values).
    SELECT s.*, t.id AS target_id,
        t.id IS NOT NULL AND (
            CASE WHEN ($2::int & 1) <> 0 THEN s.vendor_sku ELSE t.vendor_sku END,
            CASE WHEN ($2::int & 2) <> 0 THEN s.barcode ELSE t.barcode END,
            CASE WHEN ($2::int & 4) <> 0 THEN s.name ELSE t.name END,
            CASE WHEN ($2::int & 8) <> 0 THEN s.inventory_quantity ELSE t.inventory_quantity END,
            CASE WHEN ($2::int & 16) <> 0 THEN coalesce(s.inventory_policy, 'track')
                 ELSE t.inventory_policy END,
            CASE WHEN ($2::int & 32) <> 0 THEN s.retail_price ELSE t.retail_price END,
            CASE WHEN ($2::int & 64) <> 0 THEN s.cost_price ELSE t.cost_price END,
            CASE WHEN ($2::int & 128) <> 0 THEN s.compare_at_price ELSE t.compare_at_price END,
            CASE WHEN ($2::int & 256) <> 0 THEN coalesce(s.grams, 0) ELSE t.grams END,
            CASE WHEN ($2::int & 512) <> 0 THEN s.mpn ELSE t.mpn END,
            CASE WHEN ($2::int & 1024) <> 0 THEN s.external_group_id ELSE t.external_group_id END,
            CASE WHEN ($2::int & 2048) <> 0 THEN coalesce(s.options, '[]') ELSE t.options END,
            CASE WHEN ($2::int & 4096) <> 0 THEN coalesce(s.images, '[]') ELSE t.images END,
            CASE WHEN ($2::int & 8192) <> 0 THEN coalesce(s.extra, '{}') ELSE t.extra END,
            CASE WHEN ($2::int & 16384) <> 0 THEN s.currency ELSE t.currency END
        ) IS DISTINCT FROM (
            t.vendor_sku, t.barcode, t.name, t.inventory_quantity, t.inventory_policy,
            t.retail_price, t.cost_price, t.compare_at_price, t.grams, t.mpn,
            t.external_group_id, t.options, t.images, t.extra, t.currency
        ) AS changed
    FROM src s
    LEFT JOIN inventory_feed_variants t
        ON t.inventory_feed_id = $1 AND t.external_id = s.external_id
), ins AS (
    INSERT INTO inventory_feed_variants (
        inventory_feed_id, external_id, vendor_sku, barcode, name, inventory_quantity,
        inventory_policy, retail_price, cost_price, compare_at_price, grams, mpn,
        external_group_id, options, images, extra, currency, inventory_updated_at,
        last_fetched_at)
    SELECT $1, external_id, vendor_sku, barcode, name, inventory_quantity,
           coalesce(inventory_policy, 'track'), retail_price, cost_price, compare_at_price,
           coalesce(grams, 0), mpn, external_group_id, coalesce(options, '[]'),
           coalesce(images, '[]'), coalesce(extra, '{}'), currency, now(), now()
    FROM joined
    WHERE target_id IS NULL
    ORDER BY external_id
), upd AS (
    UPDATE inventory_feed_variants t SET
        vendor_sku = CASE WHEN ($2::int & 1) <> 0 THEN j.vendor_sku ELSE t.vendor_sku END,
        barcode = CASE WHEN ($2::int & 2) <> 0 THEN j.barcode ELSE t.barcode END,
        name = CASE WHEN ($2::int & 4) <> 0 THEN j.name ELSE t.name END,
        inventory_quantity = CASE WHEN ($2::int & 8) <> 0 THEN j.inventory_quantity
                                  ELSE t.inventory_quantity END,
        inventory_policy = CASE WHEN ($2::int & 16) <> 0 THEN coalesce(j.inventory_policy, 'track')
                                ELSE t.inventory_policy END,
        retail_price = CASE WHEN ($2::int & 32) <> 0 THEN j.retail_price ELSE t.retail_price END,
        cost_price = CASE WHEN ($2::int & 64) <> 0 THEN j.cost_price ELSE t.cost_price END,
        compare_at_price = CASE WHEN ($2::int & 128) <> 0 THEN j.compare_at_price
                                ELSE t.compare_at_price END,
        grams = CASE WHEN ($2::int & 256) <> 0 THEN coalesce(j.grams, 0) ELSE t.grams END,
        mpn = CASE WHEN ($2::int & 512) <> 0 THEN j.mpn ELSE t.mpn END,
        external_group_id = CASE WHEN ($2::int & 1024) <> 0 THEN j.external_group_id
                                 ELSE t.external_group_id END,
        options = CASE WHEN ($2::int & 2048) <> 0 THEN coalesce(j.options, '[]') ELSE t.options END,
        images = CASE WHEN ($2::int & 4096) <> 0 THEN coalesce(j.images, '[]') ELSE t.images END,
        extra = CASE WHEN ($2::int & 8192) <> 0 THEN coalesce(j.extra, '{}') ELSE t.extra END,
        currency = CASE WHEN ($2::int & 16384) <> 0 THEN j.currency ELSE t.currency END,
        inventory_updated_at = CASE
            WHEN ($2::int & 8) <> 0 AND j.inventory_quantity IS DISTINCT FROM t.inventory_quantity
            THEN now() ELSE t.inventory_updated_at END,
        last_fetched_at = now(), updated_at = now()
    FROM joined j
    WHERE t.id = j.target_id AND j.changed
)
-- The writes run whether or not they are read; their counts follow from `joined` (the
-- feed's lock keeps anyone else from changing its rows meanwhile).
SELECT count(*) AS distinct_rows,
       count(*) FILTER (WHERE target_id IS NULL) AS inserted,
       count(*) FILTER (WHERE changed) AS updated
FROM joined;
