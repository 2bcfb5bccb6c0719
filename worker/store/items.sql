-- Pieces of SQL about items, shared by the pull and push merges.

-- name: held_variant
-- An expression: the row `j` (staging columns, and `present`, the bit mask of the columns
-- it carries; see worker/mapping.py COLUMN_BIT) as a feed-update variant, as text. The
-- columns it does not carry are left out, so that applying it later keeps what it did not
-- carry; unknown attributes (`extra`) are merged in at the top level.
(jsonb_build_object(
     'externalId', j.external_id, 'vendorSku', j.vendor_sku, 'barcode', j.barcode,
     'name', j.name, 'inventoryQuantity', j.inventory_quantity,
     'inventoryPolicy', j.inventory_policy, 'retailPrice', j.retail_price,
     'costPrice', j.cost_price, 'compareAtPrice', j.compare_at_price,
     'grams', j.grams, 'mpn', j.mpn, 'externalGroupId', j.external_group_id,
     'options', j.options, 'images', j.images, 'currency', j.currency)
 - ARRAY(SELECT k FROM unnest(ARRAY['vendorSku', 'barcode', 'name',
     'inventoryQuantity', 'inventoryPolicy', 'retailPrice', 'costPrice',
     'compareAtPrice', 'grams', 'mpn', 'externalGroupId', 'options', 'images',
     '', 'currency']) WITH ORDINALITY AS c (k, i)
     WHERE j.present & (1 << (i::int - 1)) = 0)
 || coalesce(j.extra, '{}'))::text
