"""Prometheus metrics, served on /metrics by the daemon's health server."""

from __future__ import annotations

from prometheus_client import Counter

RUNS = Counter("feed_worker_runs_total", "Runs ended, by kind and status", ["kind", "status"])
MESSAGES = Counter("feed_worker_messages_total", "Deliveries decided, by queue and decision",
                   ["queue", "decision"])
ROWS = Counter("feed_worker_rows_total", "Feed rows handled, by outcome", ["outcome"])
