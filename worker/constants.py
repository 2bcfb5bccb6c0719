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
# The class of the error that dead-lettered a message (its message is in HEADER_ERROR).
HEADER_ERROR_CLASS = "x-feed-worker-error-class"
# When the worker first received a message (ISO 8601, microseconds): set on the
# dead-lettered copy and kept by replay, so a replayed update keeps its place in order.
HEADER_FIRST_RECEIVED = "x-first-received-at"
# When the worker dead-lettered a message (ISO 8601); replay's --older-than reads it.
HEADER_DEAD_LETTERED_AT = "x-dead-lettered-at"
# Set by `feed-worker replay requeue` on what it sends back; the daemon records each such
# message's outcome in replay_outcomes under this id.
HEADER_REPLAY_ID = "x-replay-id"
# Set by the HTTP API on the feed-update messages it publishes: the daemon records each
# such message's outcome in replay_outcomes under this id, as for a replay (the status URL
# reads it). A replay's own x-replay-id takes precedence.
HEADER_STATUS_ID = "x-status-id"
STATUS_ID_API = "api"
# The publisher's time in milliseconds since the epoch (the header RabbitMQ's
# message-timestamp plugin sets): orders updates that carry no inventoryUpdatedAt.
HEADER_TIMESTAMP_MS = "timestamp_in_ms"
# Set by RabbitMQ: the broker's own dead-lettering history (a list of tables with reason,
# queue, time, count) and, on a quorum queue's redelivery, how often it was delivered.
HEADER_DEATH = "x-death"
HEADER_DELIVERY_COUNT = "x-delivery-count"
# What replay drops from a dead letter before sending it back: the record of this (or an
# earlier) dead-lettering, which the message, once applied, no longer needs. The order
# times (HEADER_FIRST_RECEIVED, HEADER_TIMESTAMP_MS) and the publisher's headers stay.
DEAD_LETTER_HEADERS = frozenset({
    HEADER_ERROR, HEADER_ERROR_CLASS, HEADER_ORIGINAL_ROUTING_KEY, HEADER_ORIGINAL_QUEUE,
    HEADER_DEAD_LETTERED_AT, HEADER_REPLAY_ID, HEADER_DEATH, HEADER_DELIVERY_COUNT,
})
DEAD_LETTER_HEADER_PREFIXES = ("x-first-death-", "x-last-death-")

# pg_advisory_lock keys (class id of the two-int form); the second int is a feed id.
LOCK_CLASS_MIGRATE = 0x46570001
LOCK_CLASS_FEED_MERGE = 0x46570002
# Session-level, held by the one replica that schedules pulls (second int: 0).
LOCK_CLASS_SCHEDULER = 0x46570003
# Transaction-level, per dropship provider with a daily SKU limit (second int: provider id).
LOCK_CLASS_PROVIDER_DAY = 0x46570004

# The HTTP headers of a notification's POST (worker/notify): the signature
# ("sha256=<hex>": HMAC-SHA256 of "<timestamp>.<body>" under the secret), the time it was
# signed (Unix seconds), the event, and the delivery's key (the same on every try).
HEADER_NOTIFY_SIGNATURE = "X-Feed-Worker-Signature"
HEADER_NOTIFY_TIMESTAMP = "X-Feed-Worker-Timestamp"
HEADER_NOTIFY_EVENT = "X-Feed-Worker-Event"
HEADER_NOTIFY_DELIVERY = "X-Feed-Worker-Delivery"
