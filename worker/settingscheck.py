"""The checks of a Settings' values: each refusal names the variable and what it takes."""

from __future__ import annotations

import functools
import math
from dataclasses import fields
from typing import TYPE_CHECKING

from worker import envfields
from worker.errors import ConfigError
from worker.urls import mask, parse, several

if TYPE_CHECKING:
    from worker.settings import Settings


def check(s: Settings) -> None:
    env_name = functools.partial(envfields.env_name, type(s))
    if s.log_format not in ("json", "console", "auto"):
        raise ConfigError("FEED_WORKER_LOG_FORMAT must be json, console or auto")
    if s.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError("FEED_WORKER_LOG_LEVEL must be debug, info, warning or error")
    for f in fields(s):
        value = getattr(s, f.name)
        if f.name in ("retry_jitter", "min_attribute_match_share", "api_cache_s",
                      "push_batch_wait_s"):
            continue  # 0 is allowed, checked below
        if isinstance(value, float) and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{env_name(f.name)} must be a positive number")
    shares = ("cleanup_max_zeroed_share", "cleanup_max_quantity_drop",
              "breaker_max_rows_drop", "breaker_max_bytes_drop", "retry_jitter",
              "min_attribute_match_share", "notify_rejected_share", "pull_large_share")
    for name in shares:
        if not 0 <= getattr(s, name) <= 1:
            raise ConfigError(f"{env_name(name)} must be a share between 0 and 1")
    if not 0 <= s.http_port <= 65535:
        raise ConfigError("FEED_WORKER_HTTP_PORT must be 0 to 65535")
    if not 0 <= s.api_port <= 65535:
        raise ConfigError("FEED_WORKER_API_PORT must be 0 to 65535")
    positive = ("pull_concurrency", "pull_large_rows", "copy_batch_rows",
                "pipeline_queue_batches", "max_run_attempts", "delivery_limit", "db_pool_size",
                "push_batch_variants", "push_prefetch", "max_pages", "max_records",
                "max_field_chars", "retry_attempts", "pull_retry_attempts",
                "max_inflation_ratio", "api_max_body_bytes", "api_rate_burst",
                "notify_attempts", "notify_queue")
    for name in positive:
        if getattr(s, name) < 1:
            raise ConfigError(f"{env_name(name)} must be at least 1")
    if s.max_field_chars > 1 << 30:  # Postgres text holds at most 1 GB
        raise ConfigError("FEED_WORKER_MAX_FIELD_CHARS must be at most 1073741824")
    if not (math.isfinite(s.api_cache_s) and s.api_cache_s >= 0):
        raise ConfigError("FEED_WORKER_API_CACHE_S must be 0 or more seconds")
    if not (math.isfinite(s.push_batch_wait_s) and s.push_batch_wait_s >= 0):
        raise ConfigError("FEED_WORKER_PUSH_BATCH_WAIT_S must be 0 or more seconds")
    if s.auto_disable_after < 0:
        raise ConfigError("FEED_WORKER_AUTO_DISABLE_AFTER must be 0 or more")
    if s.notify_url and not s.notify_url.startswith(("http://", "https://")):
        raise ConfigError("FEED_WORKER_NOTIFY_URL must be an http:// or https:// URL")
    _check_amqp_url(s.amqp_url)
    if s.lease_s < 3:
        raise ConfigError("FEED_WORKER_LEASE_S must be at least 3")
    try:
        s.networks()
    except ValueError as exc:
        raise ConfigError(f"FEED_WORKER_ALLOWED_NETWORKS: {exc}") from None


def _check_amqp_url(amqp_url: str) -> None:
    nodes = several(amqp_url)
    for node in nodes or [""]:
        try:
            url = parse(node)
            good = url.scheme in ("amqp", "amqps") and bool(url.host)
            url.explicit_port  # noqa: B018 - a port out of range raises here
        except (ValueError, TypeError):
            good = False
        if not good:
            raise ConfigError(f"AMQP_URL: {mask(node)} is not an amqp:// or amqps:// URL "
                              "with a host (several nodes: whole URLs separated by commas)")
        if "," in url.raw_path or "," in (url.raw_host or ""):
            raise ConfigError(f"AMQP_URL: {mask(node)} has a comma in its host or vhost: "
                              "separate nodes with commas, each a whole amqp:// URL")
