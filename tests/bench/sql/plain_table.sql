-- (G) The plain table pgloader loads into: the file's columns, typed, no keys or indexes.
DROP TABLE IF EXISTS bench_pgloader;

CREATE TABLE bench_pgloader (
    external_id        text,
    vendor_sku         text,
    barcode            text,
    name               text,
    retail_price       numeric,
    compare_at_price   numeric,
    inventory_quantity integer,
    grams              numeric
);
