-- A stored fingerprint stays when the only change is that the item connects to a store
-- variant (variant_id from NULL to a variant, every other column as it was): a merge of
-- the same text would leave the item as it now is (an unchanged row never connects), so
-- the next pull may still leave that row out. This is what lets a first import, which
-- copies its rows in and connects them afterwards (worker/direct.py), keep the
-- fingerprints of the items it connects. Every other write still clears it.
DROP TRIGGER inventory_feed_variants_forget_fingerprint ON inventory_feed_variants;

CREATE TRIGGER inventory_feed_variants_forget_fingerprint
    BEFORE UPDATE ON inventory_feed_variants
    FOR EACH ROW
    WHEN (OLD.fingerprint IS NOT NULL AND NEW.fingerprint IS NOT DISTINCT FROM OLD.fingerprint
          AND NOT (OLD.variant_id IS NULL AND NEW.variant_id IS NOT NULL
                   AND (NEW.inventory_feed_id, NEW.external_id, NEW.vendor_sku, NEW.barcode,
                        NEW.name, NEW.inventory_quantity, NEW.inventory_policy,
                        NEW.retail_price, NEW.cost_price, NEW.compare_at_price, NEW.grams,
                        NEW.mpn, NEW.external_group_id, NEW.options, NEW.images, NEW.extra,
                        NEW.currency, NEW.inventory_updated_at, NEW.last_fetched_at,
                        NEW.updated_at, NEW.missing_since, NEW.ordered_at,
                        NEW.inventory_quantity_override)
                       IS NOT DISTINCT FROM
                       (OLD.inventory_feed_id, OLD.external_id, OLD.vendor_sku, OLD.barcode,
                        OLD.name, OLD.inventory_quantity, OLD.inventory_policy,
                        OLD.retail_price, OLD.cost_price, OLD.compare_at_price, OLD.grams,
                        OLD.mpn, OLD.external_group_id, OLD.options, OLD.images, OLD.extra,
                        OLD.currency, OLD.inventory_updated_at, OLD.last_fetched_at,
                        OLD.updated_at, OLD.missing_since, OLD.ordered_at,
                        OLD.inventory_quantity_override)))
    EXECUTE FUNCTION inventory_feed_variants_forget_fingerprint();
