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
for _queue in (C.QUEUE_PULL, C.QUEUE_UPDATE):
    for _reason in DEAD_LETTER_REASONS:
        DEAD_LETTERS.labels(_queue, _reason)
