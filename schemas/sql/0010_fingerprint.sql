-- Item fingerprints (worker/fingerprints.py): a pull stores with each item it writes the
-- 64-bit hash of the staged text it wrote the item from, and the next pull of the feed
-- leaves out the rows whose hash it finds: they would not change anything.
--
-- The hash is only true while nothing else has written the item since: every other write
-- (a push, the API, the cleanup's zeroing, an override set by hand, the store's own tools)
-- clears it. A writer that sets the column itself (the pull's merge) keeps its value; the
-- trigger's WHEN keeps the others' cost to a comparison in C.
ALTER TABLE inventory_feed_variants ADD COLUMN fingerprint bigint;

CREATE FUNCTION inventory_feed_variants_forget_fingerprint() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.fingerprint := NULL;
    RETURN NEW;
END
$$;

CREATE TRIGGER inventory_feed_variants_forget_fingerprint
    BEFORE UPDATE ON inventory_feed_variants
    FOR EACH ROW
    WHEN (OLD.fingerprint IS NOT NULL AND NEW.fingerprint IS NOT DISTINCT FROM OLD.fingerprint)
    EXECUTE FUNCTION inventory_feed_variants_forget_fingerprint();
