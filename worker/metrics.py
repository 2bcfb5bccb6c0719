"""Prometheus metrics, served on /metrics by the daemon's health server and by the API."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from worker import constants as C
from worker.errors import DEAD_LETTER_REASONS

RUNS = Counter("feed_worker_runs_total", "Runs ended, by kind and status", ["kind", "status"])
MESSAGES = Counter("feed_worker_messages_total", "Deliveries decided, by queue and decision",
                   ["queue", "decision"])
DEAD_LETTERS = Counter("feed_worker_dead_letters_total",
                       "Messages the worker dead-lettered, by queue and reason (one of "
                       "errors.DEAD_LETTER_REASONS)", ["queue", "reason"])
ROWS = Counter("feed_worker_rows_total", "Feed rows handled, by outcome", ["outcome"])
SCHEDULER_LEADING = Gauge("feed_worker_scheduler_leading",
                          "1 while this replica holds the scheduler lock, else 0")
SCHEDULED = Counter("feed_worker_scheduled_total",
                    "Pull-requests the scheduler published for due feeds")
PUSH_FAILURES = Counter("feed_worker_push_group_failures_total",
                        "Push group transactions that failed, by kind of failure",
                        ["kind"])
PUSH_SPLITS = Counter("feed_worker_push_group_splits_total",
                      "Push groups split in halves to find a message that fails alone")
PUSH_PAUSED = Gauge("feed_worker_push_paused",
                    "1 while push consumption is paused because the database is unavailable")
RUN_SECONDS = Histogram("feed_worker_run_seconds", "Runs' durations, start to end, by kind",
                        ["kind"], buckets=(0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
                                           300.0, 600.0, 1800.0, 3600.0))
PUSH_GROUP_SECONDS = Histogram("feed_worker_push_group_seconds",
                               "Push groups' time from being handed to the database (the "
                               "wait for the group before included) to their messages "
                               "settled",
                               buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                                        5.0, 10.0, 30.0))
QUEUE_MESSAGES = Gauge("feed_worker_queue_messages",
                       "Messages ready in each of the worker's queues, as the broker last "
                       "told (every replica reports the same queues: aggregate with max)",
                       ["queue"])
QUEUE_CONSUMERS = Gauge("feed_worker_queue_consumers",
                        "Consumers attached to each of the worker's queues, all replicas "
                        "together, as the broker last told", ["queue"])
FEEDS_STALE = Gauge("feed_worker_feeds_stale",
                    "Scheduled feeds without a successful pull for twice their interval, "
                    "counted by the replica that leads the scheduler (0 on the others)")
NOTIFICATIONS = Counter("feed_worker_notifications_total",
                        "Notifications by event and outcome: sent, failed (given up) or "
                        "dropped (the replica's queue was full)", ["event", "outcome"])
API_REQUESTS = Counter("feed_worker_api_requests_total",
                       "HTTP API requests answered, by route, method and status",
                       ["route", "method", "status"])
API_LATENCY = Histogram("feed_worker_api_request_seconds",
                        "HTTP API request latency, by route and method", ["route", "method"],
                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                                 2.5, 5.0, 10.0))

# Every series of the failure counters exists from the start, at 0: a dashboard or an alert
# on them sees "none yet" rather than "no such metric".
for _kind in ("unavailable", "contention", "permanent"):  # retry.Failure's values
    PUSH_FAILURES.labels(_kind)
for _status in ("succeeded", "failed"):
    RUNS.labels("pull", _status)
RUN_SECONDS.labels("pull")
for _outcome in ("pulled", "rejected", "pushed"):
    ROWS.labels(_outcome)
for _queue in (C.QUEUE_PULL, C.QUEUE_UPDATE):
    for _reason in DEAD_LETTER_REASONS:
        DEAD_LETTERS.labels(_queue, _reason)
