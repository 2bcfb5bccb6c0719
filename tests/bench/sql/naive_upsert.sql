-- (N) The naive peer's statement, run by asyncpg executemany once per row.
INSERT INTO inventory_feed_variants (
    inventory_feed_id, external_id, vendor_sku, barcode, name,
    retail_price, compare_at_price, inventory_quantity, grams
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (inventory_feed_id, external_id) DO UPDATE SET
    vendor_sku         = excluded.vendor_sku,
    barcode            = excluded.barcode,
    name               = excluded.name,
    retail_price       = excluded.retail_price,
    compare_at_price   = excluded.compare_at_price,
    inventory_quantity = excluded.inventory_quantity,
    grams              = excluded.grams,
    updated_at         = now()
