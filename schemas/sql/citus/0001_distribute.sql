-- Citus mode (FEED_WORKER_CITUS=1, docs/citus.md), applied by `feed-worker migrate` after
-- the numbered migrations on a coordinator with the citus extension and its workers added.
--
-- Each feed's rows live together on one worker: items, runs, their rejects, the item
-- history and the daily SKU limit's items are hash-distributed by inventory_feed_id and
-- co-located, so that a pull's merge (one feed) runs on one node. Providers, feeds, the
-- store's variants and the API's small tables are reference tables (a copy on every
-- node: joins with them stay local). processed_messages, replay_outcomes and
-- schema_migrations stay plain tables of the coordinator.

-- The row triggers (fingerprints, a feed's disabled reason) only change NEW: each shard
-- may run them by itself.
SET LOCAL citus.enable_unsafe_triggers = on;
SET LOCAL citus.multi_shard_modify_mode = 'sequential';

-- A unique key of a distributed table must contain the distribution column: the ids
-- stay unique (one identity each), the keys name the feed as well. A foreign key between
-- distributed tables must include it on both sides.
ALTER TABLE feed_run_rejects DROP CONSTRAINT feed_run_rejects_run_id_fkey;
-- (feed_runs's key to inventory_feeds comes back once both are distributed: a plain table
-- that references a reference table becomes a Citus local table, which cannot be
-- distributed after when it has an identity column.)
ALTER TABLE feed_runs DROP CONSTRAINT feed_runs_inventory_feed_id_fkey;
ALTER TABLE notifications DROP CONSTRAINT notifications_run_id_fkey;

ALTER TABLE inventory_feed_variants DROP CONSTRAINT inventory_feed_variants_pkey,
    ADD PRIMARY KEY (id, inventory_feed_id);
ALTER TABLE feed_runs DROP CONSTRAINT feed_runs_pkey,
    ADD PRIMARY KEY (id, inventory_feed_id);
DROP INDEX feed_runs_pull_message_id;
CREATE UNIQUE INDEX feed_runs_pull_message_id ON feed_runs (message_id, inventory_feed_id)
    WHERE kind = 'pull' AND message_id IS NOT NULL;
ALTER TABLE variant_inventory_updates DROP CONSTRAINT variant_inventory_updates_pkey,
    ADD PRIMARY KEY (id, inventory_feed_id);

-- A reject names its run's feed: its shard.
ALTER TABLE feed_run_rejects ADD COLUMN inventory_feed_id bigint NOT NULL;
ALTER TABLE feed_run_rejects DROP CONSTRAINT feed_run_rejects_pkey,
    ADD PRIMARY KEY (id, inventory_feed_id),
    ADD CONSTRAINT feed_run_rejects_run_fkey FOREIGN KEY (run_id, inventory_feed_id)
        REFERENCES feed_runs (id, inventory_feed_id) ON DELETE CASCADE;

-- Deleting a store variant unlinks items through this trigger on one Postgres; a
-- reference table's trigger would run on every node. In Citus mode the store's tools
-- unlink the items themselves (docs/citus.md).
DROP TRIGGER variants_unlink_deleted ON variants;

SELECT create_reference_table('dropship_providers');
SELECT create_reference_table('inventory_feeds');
SELECT create_reference_table('variants');
SELECT create_reference_table('api_tokens');
SELECT create_reference_table('api_messages');
SELECT create_reference_table('notifications');

SELECT create_distributed_table('inventory_feed_variants', 'inventory_feed_id');
SELECT create_distributed_table('feed_runs', 'inventory_feed_id',
                                colocate_with => 'inventory_feed_variants');
SELECT create_distributed_table('feed_run_rejects', 'inventory_feed_id',
                                colocate_with => 'inventory_feed_variants');
SELECT create_distributed_table('variant_inventory_updates', 'inventory_feed_id',
                                colocate_with => 'inventory_feed_variants');
SELECT create_distributed_table('provider_daily_items', 'inventory_feed_id',
                                colocate_with => 'inventory_feed_variants');

ALTER TABLE feed_runs ADD CONSTRAINT feed_runs_inventory_feed_id_fkey
    FOREIGN KEY (inventory_feed_id) REFERENCES inventory_feeds (id);
