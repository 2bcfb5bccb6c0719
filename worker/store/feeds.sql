-- Pieces of SQL about feeds and their items that several queries share.

-- name: feed_rows
-- A feed as the API shows it (secrets masked by the handlers), for get_feed and list_feeds.
SELECT f.id, f.dropship_provider_id, f.name, f.enabled, f.resource_type,
       f.resource_location, f.authentication_token, f.delimiter, f.csv_has_header,
       f.decimal_notation, f.encoding, f.mapping, f.automatically_connect,
       f.automatically_connect_by_barcode, f.automatically_connect_prefix,
       f.case_insensitive_skus, f.fetch_cleanup, f.fetch_frequency,
       extract(epoch FROM f.fetch_interval)::double precision AS fetch_interval,
       f.automated_fetching, f.cache_imports, f.breaker_max_zeroed_share,
       f.breaker_max_quantity_drop, f.breaker_max_rows_drop, f.breaker_max_bytes_drop,
       f.download_deadline_s, f.run_deadline_s, f.notify_url, f.notify_secret,
       f.notify_rejected_share, f.auto_disable_after, f.disabled_reason, f.disabled_at,
       f.created_at, f.updated_at,
       p.archived AS provider_archived
FROM inventory_feeds f
JOIN dropship_providers p ON p.id = f.dropship_provider_id

-- name: item_rows
-- An item as the API shows it, with its feed (f) for the caller's scope; for listing
-- items and getting one.
SELECT v.id, v.inventory_feed_id, v.external_id, v.vendor_sku, v.barcode, v.name,
       v.inventory_quantity, v.inventory_policy, v.retail_price, v.cost_price,
       v.compare_at_price, v.grams, v.mpn, v.external_group_id, v.options, v.images, v.extra,
       v.currency, v.variant_id, v.inventory_updated_at, v.inventory_quantity_override,
       v.missing_since, v.available, v.last_fetched_at, v.created_at, v.updated_at
FROM inventory_feed_variants v
JOIN inventory_feeds f ON f.id = v.inventory_feed_id
