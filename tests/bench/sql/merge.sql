-- (M) The same load with PostgreSQL 15 MERGE: \copy into a typed temp table, then a MERGE
-- that updates only changed rows (the file has unique keys, so no DISTINCT ON is needed).
-- Run by psql with the CSV on standard input and -v feed_id=N.
\set ON_ERROR_STOP on

CREATE TEMP TABLE staging (
    external_id        text,
    vendor_sku         text,
    barcode            text,
    name               text,
    retail_price       numeric,
    compare_at_price   numeric,
    inventory_quantity integer,
    grams              numeric
);

\copy staging FROM pstdin WITH (FORMAT csv, HEADER true)

MERGE INTO inventory_feed_variants AS v
USING staging AS s
ON v.inventory_feed_id = :feed_id AND v.external_id = s.external_id
WHEN MATCHED AND (v.vendor_sku, v.barcode, v.name, v.retail_price, v.compare_at_price,
                  v.inventory_quantity, v.grams)
                 IS DISTINCT FROM
                 (s.vendor_sku, s.barcode, s.name, s.retail_price, s.compare_at_price,
                  s.inventory_quantity, coalesce(s.grams, 0)) THEN
    UPDATE SET
        vendor_sku         = s.vendor_sku,
        barcode            = s.barcode,
        name               = s.name,
        retail_price       = s.retail_price,
        compare_at_price   = s.compare_at_price,
        inventory_quantity = s.inventory_quantity,
        grams              = coalesce(s.grams, 0),
        updated_at         = now()
WHEN NOT MATCHED THEN
    INSERT (inventory_feed_id, external_id, vendor_sku, barcode, name,
            retail_price, compare_at_price, inventory_quantity, grams)
    VALUES (:feed_id, s.external_id, s.vendor_sku, s.barcode, s.name,
            s.retail_price, s.compare_at_price, s.inventory_quantity, coalesce(s.grams, 0));
