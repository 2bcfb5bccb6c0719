-- (L') L written as a Postgres engineer would tune it: the staged rows inserted in key order
-- (ORDER BY external_id), so the unique index is written in order rather than at random;
-- the staging key has the target column's collation ("C"), so the sort matches the index.
-- Its sort gets the memory the worker's merge gets (FEED_WORKER_MERGE_WORK_MEM's default),
-- so that it does not spill to disk where the worker's does not.
-- Run by psql with the CSV on standard input and -v feed_id=N.
\set ON_ERROR_STOP on
SET work_mem = '512MB';

CREATE TEMP TABLE staging (
    external_id        text COLLATE "C",
    vendor_sku         text,
    barcode            text,
    name               text,
    retail_price       numeric,
    compare_at_price   numeric,
    inventory_quantity integer,
    grams              numeric
);

\copy staging FROM pstdin WITH (FORMAT csv, HEADER true)

INSERT INTO inventory_feed_variants AS v (
    inventory_feed_id, external_id, vendor_sku, barcode, name,
    retail_price, compare_at_price, inventory_quantity, grams
)
SELECT :feed_id, external_id, vendor_sku, barcode, name,
       retail_price, compare_at_price, inventory_quantity, coalesce(grams, 0)
FROM staging
ORDER BY external_id
ON CONFLICT (inventory_feed_id, external_id) DO UPDATE SET
    vendor_sku         = excluded.vendor_sku,
    barcode            = excluded.barcode,
    name               = excluded.name,
    retail_price       = excluded.retail_price,
    compare_at_price   = excluded.compare_at_price,
    inventory_quantity = excluded.inventory_quantity,
    grams              = excluded.grams,
    updated_at         = now()
WHERE (v.vendor_sku, v.barcode, v.name, v.retail_price, v.compare_at_price,
       v.inventory_quantity, v.grams)
      IS DISTINCT FROM
      (excluded.vendor_sku, excluded.barcode, excluded.name, excluded.retail_price,
       excluded.compare_at_price, excluded.inventory_quantity, excluded.grams);
