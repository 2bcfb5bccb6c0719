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

-- name: held_variant__citus
-- As held_variant, without a correlated subquery (which Citus does not plan here): the
-- keys of the columns the row does not carry, as an array of CASEs.
(jsonb_build_object(
     'externalId', j.external_id, 'vendorSku', j.vendor_sku, 'barcode', j.barcode,
     'name', j.name, 'inventoryQuantity', j.inventory_quantity,
     'inventoryPolicy', j.inventory_policy, 'retailPrice', j.retail_price,
     'costPrice', j.cost_price, 'compareAtPrice', j.compare_at_price,
     'grams', j.grams, 'mpn', j.mpn, 'externalGroupId', j.external_group_id,
     'options', j.options, 'images', j.images, 'currency', j.currency)
 - array_remove(ARRAY[
     CASE WHEN j.present & {bit.vendor_sku} = 0 THEN 'vendorSku' END,
     CASE WHEN j.present & {bit.barcode} = 0 THEN 'barcode' END,
     CASE WHEN j.present & {bit.name} = 0 THEN 'name' END,
     CASE WHEN j.present & {bit.inventory_quantity} = 0 THEN 'inventoryQuantity' END,
     CASE WHEN j.present & {bit.inventory_policy} = 0 THEN 'inventoryPolicy' END,
     CASE WHEN j.present & {bit.retail_price} = 0 THEN 'retailPrice' END,
     CASE WHEN j.present & {bit.cost_price} = 0 THEN 'costPrice' END,
     CASE WHEN j.present & {bit.compare_at_price} = 0 THEN 'compareAtPrice' END,
     CASE WHEN j.present & {bit.grams} = 0 THEN 'grams' END,
     CASE WHEN j.present & {bit.mpn} = 0 THEN 'mpn' END,
     CASE WHEN j.present & {bit.external_group_id} = 0 THEN 'externalGroupId' END,
     CASE WHEN j.present & {bit.options} = 0 THEN 'options' END,
     CASE WHEN j.present & {bit.images} = 0 THEN 'images' END,
     CASE WHEN j.present & {bit.currency} = 0 THEN 'currency' END]::text[], NULL)
 || coalesce(j.extra, '{}'))::text
