-- What the hot write paths pay, measured on the benchmarks.

-- Room on each page for updated versions of items: an update that changes no indexed
-- column then stays on its page (a HOT update) and writes no index entries (push
-- benchmark: 9% more items/s).
ALTER TABLE inventory_feed_variants SET (fillfactor = 85);

-- Item history is appended in time order: a BRIN index finds the rows past their
-- retention at a fraction of a btree's cost per inserted row.
DROP INDEX variant_inventory_updates_created_idx;
CREATE INDEX variant_inventory_updates_created_brin ON variant_inventory_updates
    USING brin (created_at);
