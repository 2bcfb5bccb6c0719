"""Every name other programs see on the broker, in one place."""

EXCHANGE = "inventory"
DEAD_LETTER_EXCHANGE = "inventory.dead-letter"

ROUTING_UPDATE = "feed.update"
ROUTING_PULL = "feed.pull"
ROUTING_RUN_COMPLETED = "feed.run-completed"

QUEUE_UPDATE = "inventory.feed-update"
QUEUE_PULL = "inventory.pull-request"
QUEUE_DEAD_LETTER = "inventory.dead-letter"

# Headers the worker sets on a dead-lettered message.
HEADER_ERROR = "x-feed-worker-error"
HEADER_ORIGINAL_ROUTING_KEY = "x-original-routing-key"
HEADER_ORIGINAL_QUEUE = "x-original-queue"

# pg_advisory_lock keys (class id of the two-int form); the second int is a feed id.
LOCK_CLASS_MIGRATE = 0x46570001
LOCK_CLASS_FEED_MERGE = 0x46570002
# Session-level, held by the one replica that schedules pulls (second int: 0).
LOCK_CLASS_SCHEDULER = 0x46570003
# Transaction-level, per dropship provider with a daily SKU limit (second int: provider id).
LOCK_CLASS_PROVIDER_DAY = 0x46570004
