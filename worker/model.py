"""The ground floor: the shapes every layer speaks of — a feed, a pull job, a run's report,
a stored reject — and the target attributes with their columns and mask bits. Nothing here
does I/O; everything above (store, parsers, mapping, pipeline) imports from here, never the
other way round. The merge SQL's mask bits come from COLUMN_BIT (store/queries.py puts
them in), so Python and SQL cannot disagree."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from worker.errors import FeedError

# A field longer than this (in characters) rejects its record (FEED_WORKER_MAX_FIELD_CHARS;
# the same as the csv module's own default limit).
DEFAULT_MAX_FIELD_CHARS = 128 * 1024

# Staging/target columns after external_id, in COPY order; a bit each in the merge's mask.
COLUMNS: tuple[str, ...] = (
    "vendor_sku", "barcode", "name", "inventory_quantity", "inventory_policy",
    "retail_price", "cost_price", "compare_at_price", "grams", "mpn",
    "external_group_id", "options", "images", "extra", "currency",
)
COLUMN_BIT = {c: 1 << i for i, c in enumerate(COLUMNS)}

# camelCase attribute -> column, for the attributes that have a column of their own.
ATTRIBUTES: dict[str, str] = {
    "externalId": "external_id", "vendorSku": "vendor_sku", "barcode": "barcode",
    "name": "name", "inventoryQuantity": "inventory_quantity",
    "inventoryPolicy": "inventory_policy", "retailPrice": "retail_price",
    "costPrice": "cost_price", "compareAtPrice": "compare_at_price", "grams": "grams",
    "mpn": "mpn", "externalGroupId": "external_group_id", "options": "options",
    "images": "images", "currency": "currency",
}
# Template attributes kept in `extra` (jsonb) when a feed has them.
EXTRA_ATTRIBUTES = ("description", "productType", "handle", "tags", "vendorName",
                    "countryOfOrigin", "hsCode", "externalUrl")

# A push's staging rows, in COPY order: the columns, the time the variant carries and the
# update's order time.
PUSH_COLUMNS = ("inventory_feed_id", "external_id", "present", *COLUMNS, "inventory_updated_at",
                "ordered_at")


@dataclass(frozen=True)
class PriceRule:
    """mapping.rules.price: markup, rounding, bounds (worker/rules.py applies it)."""

    attributes: tuple[str, ...] = ("retailPrice",)
    markup_percent: Decimal | None = None
    markup_amount: Decimal | None = None
    rounding: str = "none"  # none | .99 | .95 | 0.05
    minimum: Decimal | None = None
    maximum: Decimal | None = None


@dataclass(frozen=True)
class QuantityRule:
    """mapping.rules.quantity: a sum of sources (location name, column or path), the
    threshold, buffer and cap applied to the quantity in that order."""

    sources: tuple[tuple[str, int | str], ...] = ()
    locations: bool = False  # keep each source's quantity in extra.locations
    below: int | None = None
    buffer: int | None = None
    cap: int | None = None


@dataclass(frozen=True)
class BarcodeRule:
    """mapping.rules.barcode: E-notation is refused; GTIN check digits reject or warn."""

    gtin: str = "reject"  # reject | warn | off


@dataclass(frozen=True)
class Rules:
    """A feed's value rules (mapping.rules), the same for its pulls and pushes."""

    price: PriceRule | None = None
    quantity: QuantityRule | None = None
    barcode: BarcodeRule | None = None

    def __bool__(self) -> bool:
        return bool(self.price or self.quantity or self.barcode)


@dataclass(frozen=True)
class Secondary:
    """A feed's second file (mapping.secondary), joined to its own rows by a key: its
    attributes (but the key) are its own. Its mapping maps the key as `externalId`."""

    url: str
    resource_type: str        # ftp_csv, xml or json
    join_on: str              # the key's attribute in the feed's file: externalId, vendorSku
    mapping: FeedMapping
    delimiter: str | None = None
    csv_has_header: bool = True


@dataclass(frozen=True)
class SourceOptions:
    """How a feed's server is reached, from its mapping (worker/sourceopts.py): names and
    public facts only; the secrets themselves (private keys, passphrases) are given to the
    worker by its settings and never stored with the feed."""

    sftp_key: str | None = None      # mapping.sftpKey: the name of a key the worker holds
    host_keys: tuple[str, ...] = ()  # mapping.sftpHostKey: pinned SHA256 fingerprints
    ftps_mode: str = ""              # mapping.ftpsMode: "", "explicit" or "implicit"
    ca_bundle: str | None = None     # mapping.caBundle: PEM certificates trusted for TLS
    tls_verify: bool = True          # mapping.tlsVerify: false skips certificate checks


@dataclass(frozen=True)
class FeedMapping:
    """A feed's mapping JSON, as worker/feedmapping.py parsed and checked it: the feed's
    own fields over its preset's over the template names (for XML and JSON, every reference
    attribute by its own name, unless `"auto": false`)."""

    # CSV: header name or 0-based index (int); XML: an XPath; JSON: a dotted path.
    fields: Mapping[str, int | str] = field(default_factory=dict)
    # attribute -> {source text, trimmed and lower-cased -> the value's text}
    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    record: str = ""          # XML: /rss/channel/item; JSON: data.items ("": the document)
    namespaces: Mapping[str, str] = field(default_factory=dict)  # XML prefix -> URI
    ndjson: bool = False      # JSON: newline-delimited (mapping.format ndjson or jsonl)
    next: str = ""            # JSON: dotted path of the next page's URL ("": none)
    zip_entry: str | None = None  # the file to read from a zip (None: its first file)
    # A spreadsheet's sheet by name or 0-based index; a Google Sheets link's tab by name.
    sheet: str | int | None = None
    header_row: int | None = None  # a spreadsheet's header row, its row number (from 1)
    # A file name that is a pattern (sources/names.py): which matching file is taken
    # ("name": the last by name, "newest": by modification time), and the time zone of
    # its date templates.
    pick: str = "name"
    time_zone: str = "UTC"
    source: SourceOptions = field(default_factory=SourceOptions)  # keys, host keys, TLS
    rules: Rules = field(default_factory=Rules)  # value rules, pull and push alike
    secondary: Secondary | None = None  # a second file joined to the feed's (pulls)
    # The fields that come from the preset or (XML, JSON) the template names rather than
    # the feed's own `fields`: the file may lack them. The feed's own must match (a CSV
    # column in the header; an XML/JSON path in some record).
    optional: frozenset[str] = frozenset()
    auto: bool = True         # attributes named nowhere map from the template names
    preset: str = ""          # the preset the mapping starts from (worker/presets.py)
    # Why the stored mapping cannot be used (set by the feed loader instead of raising,
    # so that the run can be claimed and then failed with it before any download).
    error: str | None = None

    def check(self) -> FeedMapping:
        """Itself, if usable; raises FeedError with why not otherwise."""
        if self.error is not None:
            raise FeedError(self.error)
        return self


@dataclass
class Feed:
    id: int
    name: str
    enabled: bool
    resource_type: str
    resource_location: str | None
    delimiter: str | None
    csv_has_header: bool
    decimal_notation: str
    encoding: str | None
    mapping: FeedMapping  # parsed (worker/feedmapping.py)
    provider_archived: bool
    cache_imports: bool = False
    authentication_token: str | None = None  # sent as a bearer token (HTTP)
    fetch_cleanup: str = "enabled"  # zero the items a pull's file no longer has
    provider_id: int = 0
    daily_sku_limit: int | None = None  # distinct items the provider may write per UTC day
    automatically_connect: bool = True  # by SKU
    automatically_connect_by_barcode: bool = False
    automatically_connect_prefix: str = "both"  # both | prefixOnly
    case_insensitive_skus: bool = False
    sku_prefix: str | None = None  # the provider's
    # The cleanup circuit breaker's limits for this feed; None: the worker's setting.
    breaker_max_zeroed_share: float | None = None
    breaker_max_quantity_drop: float | None = None
    breaker_max_rows_drop: float | None = None
    breaker_max_bytes_drop: float | None = None
    download_deadline_s: float | None = None  # None: FEED_WORKER_DOWNLOAD_DEADLINE_S
    run_deadline_s: float | None = None       # None: FEED_WORKER_RUN_DEADLINE_S


@dataclass
class RunReport:
    """What a run did; written to feed_runs when it ends."""

    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    duplicates: int = 0
    zeroed: int = 0      # items missing from the file, set to 0 (cleanup)
    connected: int = 0   # items linked to a store variant
    ambiguous: int = 0   # items left unlinked: several matches
    skipped: int = 0     # items held back by the daily SKU limit
    bytes: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredReject:
    position: int
    raw: str
    reason: str
    message_id: str | None = None


@dataclass(frozen=True)
class PullJob:
    run_id: int
    feed: Feed
    url: str
    owner: str
    local_files: bool = False  # file:// allowed (a person's --url, never a feed's setting)
    previous: dict[str, Any] | None = None  # validators of the last read (cache_imports)
    force: bool = False     # apply what the cleanup circuit breaker would hold
    dry_run: bool = False   # report what the run would do, then roll everything back
    # The feed's last succeeded pull as the claim read it (`last_known`; None: there was
    # none); else the run reads it itself.
    last_known: bool = False
    last_pull: LastPull | None = None
    # A large run's turns while small runs are in flight (runner.SmallFirst); None: the run
    # never pauses.
    turns: Turns | None = None


class Turns(Protocol):
    """A large run's turns: whether small runs are in flight (`waiting`), and `pause`,
    called between pieces of its file with the seconds it worked since the last, which
    returns the seconds it paused."""

    @property
    def waiting(self) -> bool: ...

    async def pause(self, worked_s: float) -> float: ...


@dataclass(frozen=True)
class LastPull:
    """What a feed's last succeeded pull read."""

    run_id: int
    rows_read: int
    bytes: int  # as downloaded; 0 when unknown
    compression: str | None  # as detected: none, gzip, zip; None when not recorded
