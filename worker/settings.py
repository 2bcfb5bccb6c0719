"""One frozen Settings, built once from the environment: each setting's declaration, with
the help text the README's table repeats. Reading the environment is envfields', checking
the values settingscheck's."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from worker import envfields, settingscheck
from worker.model import DEFAULT_MAX_FIELD_CHARS


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class Settings:
    """Every knob of the worker; the README lists each variable with its default."""

    database_url: str = field(
        default="postgresql://localhost/feed_worker",
        metadata={"env": "DATABASE_URL", "help": "Postgres DSN"},
    )
    amqp_url: str = field(
        default="amqp://guest:guest@localhost:5672/",
        metadata={"env": "AMQP_URL",
                  "help": "RabbitMQ URL; or a cluster's nodes, whole URLs separated by commas "
                          "(amqp://u:p@h1:5672/v,amqp://u:p@h2:5672/v): each connection goes "
                          "to the first that answers, and to another when its node goes away"},
    )
    log_level: str = field(
        default="info",
        metadata={"help": "debug, info, warning or error"},
    )
    log_format: str = field(
        default="auto",
        metadata={"help": "json, console, or auto (console on a terminal)"},
    )
    worker_id: str = field(
        default_factory=_default_worker_id,
        metadata={"help": "name of this replica in run leases and logs (host-pid: this host's name"
                          " and the process id)"},
    )
    http_host: str = field(
        default="0.0.0.0",  # noqa: S104
        metadata={"help": "health/metrics bind address"},
    )
    http_port: int = field(
        default=9187,
        metadata={"help": "health/metrics port; 0 turns it off"},
    )
    metrics_refresh_s: float = field(
        default=15.0,
        metadata={"help": "how often the daemon reads its queues' depths and consumers from "
                          "RabbitMQ and, on the scheduler's leader, the stale feeds from "
                          "Postgres, for /metrics"},
    )
    pull_concurrency: int = field(
        default=2,
        metadata={"help": "pulls one replica runs at once, of each size: as many small ones "
                          "and as many large ones (see FEED_WORKER_PULL_LARGE_ROWS), so that "
                          "a big file never holds up the small feeds"},
    )
    pull_large_rows: int = field(
        default=100_000,
        metadata={"help": "a feed whose last succeeded pull read at least this many rows is "
                          "pulled in the large runs' lane"},
    )
    pull_large_share: float = field(
        default=0.25,
        metadata={"help": "while small pulls are running, a large one pauses between pieces "
                          "of its file so that it takes at most this share of the time (1: "
                          "it never pauses); its deadlines and its download's least rate do "
                          "not count the pauses"},
    )
    fetch_connect_timeout_s: float = field(
        default=10.0,
        metadata={"help": "seconds to connect to a feed's server before the download fails"},
    )
    api_host: str = field(
        default="0.0.0.0",  # noqa: S104
        metadata={"help": "HTTP API bind address (feed-worker api)"},
    )
    api_port: int = field(
        default=8187,
        metadata={"help": "HTTP API port (feed-worker api); 0 takes a free port, logged in "
                          "api.started"},
    )
    api_max_body_bytes: int = field(
        default=1024 * 1024,
        metadata={"help": "an HTTP API request body larger than this is refused (413)"},
    )
    api_rate_per_s: float = field(
        default=50.0,
        metadata={"help": "synchronous parse-webhook requests per second per token, per API "
                          "replica (token bucket; past it: 429 with Retry-After)"},
    )
    api_rate_burst: int = field(
        default=100,
        metadata={"help": "requests a token may send at once above that rate"},
    )
    api_cache_s: float = field(
        default=2.0,
        metadata={"help": "seconds an API replica trusts what it read of a token and of a "
                          "feed's owner and state (0: it reads them for every request); a "
                          "revoked token may be taken this long"},
    )
    fetch_read_timeout_s: float = field(
        default=60.0,
        metadata={"help": "longest wait, in seconds, for the next bytes of a download"},
    )
    max_file_bytes: int = field(
        default=2 * 1024**3,
        metadata={"help": "a download larger than this fails its run"},
    )
    max_redirects: int = field(
        default=5,
        metadata={"help": "HTTP redirects followed (each checked like the feed URL)"},
    )
    allowed_networks: str = field(
        default="",
        metadata={"help": "CIDRs feeds may be fetched from besides global addresses "
                          "(comma-separated, e.g. 127.0.0.1/32); loopback, private, link-local and"
                          " CGNAT addresses are refused otherwise"},
    )
    max_decompressed_bytes: int = field(
        default=8 * 1024**3,
        metadata={"help": "a gzip/zip feed that inflates past this fails its run"},
    )
    max_inflation_ratio: int = field(
        default=100,
        metadata={"help": "a gzip/zip feed that inflates to more than this many times the "
                          "compressed bytes read so far fails its run, as the bytes arrive; judged"
                          " once 16 MiB are inflated, so small files compressed further pass"},
    )
    max_pages: int = field(
        default=1000,
        metadata={"help": "pages followed in one paginated API pull"},
    )
    max_records: int = field(
        default=50_000_000,
        metadata={"help": "a pull with more records than this fails"},
    )
    max_field_chars: int = field(
        default=DEFAULT_MAX_FIELD_CHARS,
        metadata={"help": "a record (CSV, XML or JSON) or a pushed variant with a field longer "
                          "than this many characters is rejected, the rest of the file or message "
                          "goes on"},
    )
    sheets_origin: str = field(
        default="https://docs.google.com",
        metadata={"help": "where Google Sheets links live: a spreadsheet's link there (edit, "
                          "share or published) is read as its export: its tab's CSV (a CSV "
                          "feed), its workbook's XLSX (a spreadsheet feed)"},
    )
    sftp_known_hosts: str = field(
        default="~/.ssh/known_hosts",
        metadata={"help": "known_hosts file that SFTP servers' host keys are checked against (an "
                          "unknown key fails the run), unless a feed pins its server's key "
                          "(mapping.sftpHostKey)"},
    )
    sftp_key_dir: str = field(
        default="",
        metadata={"help": "directory of the SFTP private keys that feeds name (mapping.sftpKey): "
                          "the file NAME holds the key (OpenSSH or PEM format), NAME.passphrase "
                          "its passphrase when it has one"},
    )
    # The key and its passphrase are secrets: never shown by repr() (a log of the settings).
    sftp_key: str = field(
        default="",
        repr=False,
        metadata={"help": "an SFTP private key that feeds name as default (mapping.sftpKey): "
                          "its text (OpenSSH or PEM format) or the path of its file"},
    )
    sftp_key_passphrase: str = field(
        default="",
        repr=False,
        metadata={"help": "the passphrase of FEED_WORKER_SFTP_KEY, when it has one"},
    )
    copy_batch_rows: int = field(
        default=5000,
        metadata={"help": "rows per COPY chunk between parser and database"},
    )
    pipeline_queue_batches: int = field(
        default=8,
        metadata={"help": "batches buffered between parser and COPY"},
    )
    max_stored_rejects: int = field(
        default=10_000,
        metadata={"help": "rejects stored per run (all are counted)"},
    )
    max_reject_raw_chars: int = field(
        default=2000,
        metadata={"help": "raw text kept per reject"},
    )
    lease_s: float = field(
        default=60.0,
        metadata={"help": "a run whose owner stops renewing it is taken over"},
    )
    max_run_attempts: int = field(
        default=3,
        metadata={"help": "takeovers before an abandoned run is failed"},
    )
    shutdown_grace_s: float = field(
        default=30.0,
        metadata={"help": "in-flight work gets this long to finish on SIGTERM"},
    )
    delivery_limit: int = field(
        default=5,
        metadata={"help": "deliveries of one message before the broker dead-letters it"},
    )
    push_batch_variants: int = field(
        default=20000,
        metadata={"help": "a push micro-batch closes at this many variants"},
    )
    push_batch_wait_s: float = field(
        default=0.02,
        metadata={"help": "... or, while messages keep coming, this long after its first "
                          "message (once the batch before it is over; a pause in the stream "
                          "closes it at once, a lone message is applied without waiting; 0: "
                          "at the first pause)"},
    )
    push_prefetch: int = field(
        default=2000,
        metadata={"help": "feed-update messages taken from the broker ahead (unacknowledged "
                          "until their batch commits: the messages of about a fifth of a "
                          "second at 10,000 a second)"},
    )
    message_retention_s: float = field(
        default=7 * 24 * 3600.0,
        metadata={"help": "applied message ids are remembered this long (7 days), for "
                          "idempotency; so are what replayed and API-published messages came to "
                          "(replay_outcomes, api_messages: the status URL answers 404 after "
                          "that)"},
    )
    db_pool_size: int = field(
        default=8,
        metadata={"help": "Postgres connections per replica"},
    )
    merge_work_mem: str = field(
        default="512MB",
        metadata={"help": "work_mem of the merge: each of its sorts, hash tables and held row sets"
                          " may use this much memory in the Postgres backend (a 1M-row pull needs "
                          "about 200 to 400 MB for each); below that it spills to temp files (0.5 "
                          "s of a 1M-row pull at 256MB, measured)"},
    )
    cleanup_max_zeroed_share: float = field(
        default=0.2,
        metadata={"help": "a pull with cleanup on that would zero more than this share of a feed's"
                          " available items is held (cleanup circuit breaker, the zeroed rule; see"
                          " The marketplace's rules in the README); per feed: "
                          "inventory_feeds.breaker_max_zeroed_share"},
    )
    cleanup_max_quantity_drop: float = field(
        default=0.5,
        metadata={"help": "... or that would drop the feed's total tracked quantity by more than "
                          "this share (the quantity rule); per feed: breaker_max_quantity_drop"},
    )
    breaker_max_rows_drop: float = field(
        default=0.3,
        metadata={"help": "... or that read more than this share fewer records than the feed's "
                          "last succeeded pull (the rows rule); per feed: breaker_max_rows_drop"},
    )
    breaker_max_bytes_drop: float = field(
        default=0.5,
        metadata={"help": "... or whose file, in bytes as downloaded, is more than this share "
                          "smaller than the last succeeded pull's (the bytes rule); per feed: "
                          "breaker_max_bytes_drop"},
    )
    min_attribute_match_share: float = field(
        default=0.5,
        metadata={"help": "a mapped attribute with a value in fewer than this share of a "
                          "pull's records is a warning on the run (details.warnings, the "
                          "run-completed event); 0 turns the warning off (see Mapping in the "
                          "README)"},
    )
    item_history: bool = field(
        default=True,
        metadata={"help": "record quantity and price changes in variant_inventory_updates "
                          "(true/false)"},
    )
    citus: bool = field(
        default=False,
        metadata={"help": "the database is a Citus coordinator: feed-worker migrate "
                          "distributes the tables after the migrations (docs/citus.md) "
                          "(true/false)"},
    )
    history_retention_s: float = field(
        default=90 * 24 * 3600.0,
        metadata={"help": "item history older than this (90 days) is deleted, and so "
                                  "are notifications decided before then"},
    )
    scheduler: bool = field(
        default=True,
        metadata={"help": "publish pull-requests for feeds that are due; one replica leads "
                          "(true/false)"},
    )
    schedule_tick_s: float = field(
        default=30.0,
        metadata={"help": "how often the leading replica looks for due feeds"},
    )
    retry_attempts: int = field(
        default=10,
        metadata={"help": "tries of work that failed on a transient error (database or network "
                          "unavailable, deadlock) before it is held (pushes: consumption pauses "
                          "until the database answers) or given up (see Failure behaviour in the "
                          "README)"},
    )
    retry_base_s: float = field(
        default=0.2,
        metadata={"help": "first backoff between tries; it doubles each try"},
    )
    retry_cap_s: float = field(
        default=10.0,
        metadata={"help": "longest backoff between tries"},
    )
    retry_jitter: float = field(
        default=0.5,
        metadata={"help": "share of each backoff drawn at random (0 to 1), so that replicas do not"
                          " retry in step"},
    )
    pull_retry_attempts: int = field(
        default=3,
        metadata={"help": "tries of a pull that failed on a transient error (network: timeouts, "
                          "resets, 408/429/5xx; database: connection lost, restart) before its run"
                          " fails"},
    )
    download_deadline_s: float = field(
        default=3600.0,
        metadata={"help": "a download taking longer than this fails its run (per feed: "
                          "inventory_feeds.download_deadline_s)"},
    )
    run_deadline_s: float = field(
        default=7200.0,
        metadata={"help": "a pull run, its retries included, taking longer than this fails (per "
                          "feed: inventory_feeds.run_deadline_s)"},
    )
    min_transfer_bytes_per_s: int = field(
        default=1024,
        metadata={"help": "a download averaging fewer bytes per second than this, once "
                          "FEED_WORKER_TRANSFER_GRACE_S have passed, fails its run "
                          "(0: no minimum)"},
    )
    transfer_grace_s: float = field(
        default=60.0,
        metadata={"help": "time a download may run before its rate is checked"},
    )
    max_future_skew_s: float = field(
        default=300.0,
        metadata={"help": "a pushed inventoryUpdatedAt further than this in the future is "
                          "rejected; a publisher's timestamp_in_ms that far ahead is ignored"},
    )
    notify_url: str = field(
        default="",
        metadata={"help": "webhook that notifications of pulls are POSTed to (a run failed, held"
                          " or with too many rejects; a feed gone stale; see Notifications in the"
                          " README); empty: none, but for feeds with their own notify_url"},
    )
    notify_secret: str = field(
        default="", repr=False,
        metadata={"help": "key of the notifications' HMAC-SHA256 signature "
                          "(X-Feed-Worker-Signature) for feeds without their own notify_secret;"
                          " never logged or shown"},
    )
    notify_timeout_s: float = field(
        default=10.0,
        metadata={"help": "seconds one notification POST may take, connecting included"},
    )
    notify_attempts: int = field(
        default=5,
        metadata={"help": "tries of a notification whose POST failed (no answer, a timeout, a "
                          "408, 429 or 5xx answer), with the retry backoff "
                          "(FEED_WORKER_RETRY_BASE_S, doubling up to FEED_WORKER_RETRY_CAP_S), "
                          "before it is given up"},
    )
    notify_rejected_share: float = field(
        default=0.05,
        metadata={"help": "a succeeded pull that rejected more than this share of the records "
                          "it read is notified (per feed: inventory_feeds.notify_rejected_share;"
                          " 1: never)"},
    )
    notify_queue: int = field(
        default=1000,
        metadata={"help": "notifications one replica holds waiting to be sent; past it a new "
                          "one is dropped, logged and counted"},
    )
    auto_disable_after: int = field(
        default=0,
        metadata={"help": "a feed whose pulls fail this many times in a row is disabled, with "
                          "the reason in disabled_reason (per feed: "
                          "inventory_feeds.auto_disable_after; 0: never)"},
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        settings = cls(**envfields.read(cls, os.environ if environ is None else environ))
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raises ConfigError, naming the variable, for a value out of its range."""
        settingscheck.check(self)

    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """The allowed networks, parsed."""
        return tuple(ipaddress.ip_network(n.strip(), strict=False)
                     for n in self.allowed_networks.split(",") if n.strip())



def env_name(field_name: str) -> str:
    return envfields.env_name(Settings, field_name)


def describe() -> list[tuple[str, str, str]]:
    """(variable, default, help) for every setting, for --help and the README."""
    return envfields.describe(Settings, {"worker_id": "host-pid"})
