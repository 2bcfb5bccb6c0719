"""A feed's `mapping` JSON, parsed and checked once for its resource type.

`parse_mapping` is the one place that reads the stored JSON: it raises FeedError naming
the key at fault, and returns a frozen FeedMapping (worker/model.py) that the mapper, the
XML and JSON parsers, the zip reader and pagination take as it is. Feeds are loaded with
their mapping parsed (store/runs.py), so a bad mapping fails its run before anything is
downloaded (envelope.execute).

Fields come from three places, the first that names an attribute winning: the feed's own
`fields`, its `preset` (worker/presets.py), and the template names (`"auto": false` turns
those off). Only the feed's own fields must match (the others are FeedMapping.optional).

The keys, by resource type:
  all      `values` (attribute -> {source text -> value}), `zipEntry`, `preset`, `auto`,
           `rules` (value rules: price, quantity, barcode; worker/rules.py), `pick` and
           `timeZone` (a file name that is a pattern; worker/sources/names.py), the source
           options `sftpKey`, `sftpHostKey`, `ftpsMode`, `caBundle`, `tlsVerify`
           (worker/sourceopts.py), `secondary` (a second file joined by a key)
  CSV      `fields`: attribute -> header name or 0-based column index; `sheet` (a Google
           Sheets link's tab by name; a spreadsheet file's sheet), `headerRow`
  spreadsheet  as CSV; `sheet` by name or 0-based index, `headerRow` (its row number)
  XML      `record` (absolute path of the record element), `namespaces` (prefix -> URI),
           `fields`: attribute -> XPath relative to the record
  JSON     `record` (dotted path of the array of records), `format` (json | ndjson),
           `next` (dotted path of the next page's URL), `fields`: attribute -> dotted path
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import orjson

from worker.errors import FeedError
from worker.model import ATTRIBUTES, EXTRA_ATTRIBUTES, FeedMapping, Rules, Secondary
from worker.parsers import xmlpaths
from worker.presets import PRESETS, Preset, preset_for
from worker.ruleparse import parse_rules
from worker.sourceopts import parse_source_options
from worker.sources import names

_KNOWN = frozenset((*ATTRIBUTES, *EXTRA_ATTRIBUTES))
JSON_FORMATS = ("", "json", "ndjson", "jsonl")


def has_header_row(resource_type: str, csv_has_header: bool) -> bool:
    """Whether records come with names: only a CSV without a header row has none (its
    mapping gives column indexes)."""
    return resource_type not in ("ftp_csv", "webhook", "spreadsheet") or csv_has_header


def parse_mapping(raw: Any, resource_type: str, csv_has_header: bool = True) -> FeedMapping:
    """The feed's mapping JSON (None or not an object: an empty mapping), checked in the
    order its consumers read it; raises FeedError with the first problem."""
    rule = names.parse_rule(raw)
    mapping = _with_source(raw, resource_type, csv_has_header)
    second = raw.get("secondary") if isinstance(raw, dict) else None
    return replace(mapping, pick=rule.pick, time_zone=rule.zone,
                   secondary=None if second is None else _secondary(second, resource_type))


SECONDARY_FORMATS = {"csv": "ftp_csv", "xml": "xml", "json": "json"}
JOIN_KEYS = ("externalId", "vendorSku")


def _secondary(raw: Any, resource_type: str) -> Secondary:
    """mapping.secondary: {url, format (csv, xml, json), joinOn (externalId or
    vendorSku), mapping (the second file's own), delimiter, header}."""
    what = "mapping.secondary"
    if resource_type == "webhook":
        raise FeedError(f"{what}: a webhook feed is not pulled")
    if not isinstance(raw, dict):
        raise FeedError(f"{what} must be an object with the second file's url")
    url = raw.get("url")
    if not isinstance(url, str) or "://" not in url:
        raise FeedError(f"{what}.url must be the second file's URL")
    kind = SECONDARY_FORMATS.get(raw.get("format", "csv"))
    if kind is None:
        raise FeedError(f"{what}.format must be one of {', '.join(SECONDARY_FORMATS)}")
    key = raw.get("joinOn", "externalId")
    if key not in JOIN_KEYS:
        raise FeedError(f"{what}.joinOn must be externalId or vendorSku")
    header = raw.get("header", True)
    delimiter = raw.get("delimiter")
    if not isinstance(header, bool):
        raise FeedError(f"{what}.header must be true or false")
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
        raise FeedError(f"{what}.delimiter must be one character")
    data = raw.get("mapping") or {}
    if not isinstance(data, dict) or "secondary" in data:
        raise FeedError(f"{what}.mapping must be the second file's mapping (no secondary)")
    fields = dict(data.get("fields") or {})
    if key != "externalId":  # the join key goes where the mapper wants a key
        if key not in fields:
            raise FeedError(f"{what}.mapping.fields must name {key}, the join key")
        fields["externalId"] = fields.pop(key)
    try:
        mapping = parse_mapping({**data, "fields": fields}, kind, header)
    except FeedError as exc:
        raise FeedError(f"{what}: {exc}") from None
    return Secondary(url, kind, key, mapping, delimiter, header)


def _with_source(raw: Any, resource_type: str, csv_has_header: bool) -> FeedMapping:
    data: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
    source = parse_source_options(data)
    mapping = _parse(data, resource_type, csv_has_header)
    return replace(mapping, source=source) if source != mapping.source else mapping


def _parse(data: Mapping[str, Any], resource_type: str, csv_has_header: bool) -> FeedMapping:
    zip_entry = data.get("zipEntry")
    if zip_entry is not None and not isinstance(zip_entry, str):
        raise FeedError("mapping.zipEntry must be the name of a file in the zip")
    sheet = _sheet(data.get("sheet"), resource_type)
    header_row = _header_row(data.get("headerRow"), resource_type, csv_has_header)
    auto = data.get("auto", True)
    if not isinstance(auto, bool):
        raise FeedError("mapping.auto must be true or false")
    preset = _preset(data.get("preset"), resource_type)
    if not isinstance(data.get("fields") or {}, dict):
        raise FeedError("mapping.fields must be an object")
    named = frozenset(data.get("fields") or {})
    data = _with_preset(data, preset)
    if resource_type == "xml":
        mapping = _xml(data, auto)
    elif resource_type == "json":
        mapping = _json(data, auto)
    else:
        header = has_header_row(resource_type, csv_has_header)
        mapping = _csv(data, header, zip_entry)
        kind = "push" if resource_type == "webhook" else "csv" if header else "csv-index"
        return _with_rules(replace(mapping, optional=frozenset(mapping.fields) - named,
                                   auto=auto, preset=data.get("preset") or "", sheet=sheet,
                                   header_row=header_row),
                           data, kind, named)
    if not isinstance(data.get("values") or {}, dict):
        raise FeedError("mapping.values must be an object")
    if "externalId" not in mapping.fields:
        raise FeedError(missing_external_id(list(mapping.fields)))
    return _with_rules(FeedMapping(mapping.fields, _values(data), mapping.record,
                                   mapping.namespaces, mapping.ndjson, mapping.next, zip_entry,
                                   sheet, optional=frozenset(mapping.fields) - named,
                                   auto=auto, preset=data.get("preset") or ""),
                       data, "paths", named, _path_check(resource_type, mapping))


def _sheet(sheet: Any, resource_type: str) -> str | int | None:
    """A tab by name; in a spreadsheet feed also by 0-based index."""
    if sheet is None or (isinstance(sheet, str) and sheet.strip()):
        return sheet
    if resource_type == "spreadsheet":
        if isinstance(sheet, int) and not isinstance(sheet, bool) and sheet >= 0:
            return sheet
        raise FeedError("mapping.sheet must be the name of a sheet of the spreadsheet or "
                        "its 0-based index")
    raise FeedError("mapping.sheet must be the name of a tab of the spreadsheet")


def _header_row(value: Any, resource_type: str, csv_has_header: bool) -> int | None:
    """A spreadsheet's header row (a CSV feed's file may turn out to be one)."""
    if value is None:
        return None
    if resource_type not in ("spreadsheet", "ftp_csv"):
        raise FeedError(f"mapping.headerRow applies to spreadsheets, not {resource_type!r}")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FeedError("mapping.headerRow must be the header's row number (1 is the first)")
    if not csv_has_header:
        raise FeedError("mapping.headerRow names a header row but csv_has_header is false")
    return value


def _with_rules(mapping: FeedMapping, data: Mapping[str, Any], kind: str,
                named: frozenset[str],
                check_path: Callable[[str, str], object] | None = None) -> FeedMapping:
    """The mapping with its value rules; a quantity sum replaces a preset's quantity field
    and may not stand beside the feed's own."""
    rules = parse_rules(data.get("rules"), kind)
    if rules.quantity and rules.quantity.sources and "inventoryQuantity" in mapping.fields:
        if "inventoryQuantity" in named:
            raise FeedError("mapping.fields.inventoryQuantity and mapping.rules.quantity.sum "
                            "both give the quantity: keep one")
        fields = {a: f for a, f in mapping.fields.items() if a != "inventoryQuantity"}
        mapping = replace(mapping, fields=fields,
                          optional=mapping.optional - {"inventoryQuantity"})
    if kind == "paths" and rules.quantity and rules.quantity.sources:
        # An XML or JSON parser reads the sum's paths as fields of their own, named as the
        # run's details.matched names them; the sum then finds them in the parser's header.
        keys = [(name, sum_field(name)) for name, _ in rules.quantity.sources]
        if check_path is not None:
            for name, path in rules.quantity.sources:
                check_path(str(path), f"mapping.rules.quantity.sum ({name})")
        fields = {**mapping.fields, **{key: path for (_, key), (_, path)
                                       in zip(keys, rules.quantity.sources, strict=True)}}
        quantity = replace(rules.quantity, sources=tuple(keys))
        mapping = replace(mapping, fields=fields)
        rules = replace(rules, quantity=quantity)
    return replace(mapping, rules=rules) if rules else mapping


def _path_check(resource_type: str, mapping: FeedMapping) -> Callable[[str, str], object]:
    """How a path of an XML (an XPath, in the feed's namespaces) or JSON feed is checked."""
    if resource_type == "xml":
        names = xmlpaths.Names(mapping.namespaces or None)
        return lambda path, what: xmlpaths.getter(path, names, what)
    return dotted


def sum_field(location: str) -> str:
    """The name a source of the quantity sum goes by (its column in the run's counts)."""
    return f"inventoryQuantity ({location})"


@functools.lru_cache(maxsize=4096)  # every push group asks again for its feeds' rules
def push_rules(raw_json: str | None, resource_type: str, csv_has_header: bool) -> Rules:
    """A feed's value rules for its pushes: only `mapping.rules` of the stored JSON is read
    (a push needs nothing else of the mapping); the quantity sum's sources are keys or
    dotted paths of the pushed variants (a CSV feed's column names read as keys)."""
    data = orjson.loads(raw_json) if raw_json else None
    raw = data.get("rules") if isinstance(data, dict) else None
    if resource_type in ("xml", "json"):
        # The sum's paths name a pushed variant's keys where they are dotted keys (a JSON
        # feed's usually are); a variant without them keeps its own inventoryQuantity.
        return parse_rules(raw, "paths")
    kind = "push" if resource_type == "webhook" or csv_has_header else "csv-index"
    return parse_rules(raw, kind)


def _preset(name: Any, resource_type: str) -> Preset | None:
    if name is None:
        return None
    if not isinstance(name, str) or name not in PRESETS:
        raise FeedError(f"mapping.preset {name!r} is not one of "
                        f"{', '.join(sorted(PRESETS))}")
    preset = preset_for(name, resource_type)
    if preset is None:
        types = [t for p in PRESETS[name] for t in p.resource_types]
        raise FeedError(f"mapping.preset {name!r} reads resource_type "
                        f"{' or '.join(types)}, not {resource_type!r}")
    return preset


def _with_preset(data: Mapping[str, Any], preset: Preset | None) -> Mapping[str, Any]:
    """The mapping with the preset's keys under the feed's own: fields and value maps
    attribute by attribute (a feed's value map replaces the preset's for its attribute)."""
    if preset is None:
        return data
    out = dict(data)
    out["fields"] = {**preset.fields, **(data.get("fields") or {})}
    values = data.get("values") or {}
    if isinstance(values, dict):
        out["values"] = {**preset.values, **values}
    if preset.record:
        out.setdefault("record", preset.record)
        out["namespaces"] = {**preset.namespaces, **(data.get("namespaces") or {})}
    return out


def missing_external_id(header: Sequence[str] | None) -> str:
    if header is None:
        return ("the feed has no header row: mapping.fields must give the 0-based column "
                "of externalId (and the other attributes)")
    return ("no column for externalId: map it in mapping.fields or name a column "
            f"external_id (header: {show_header(header)})")


def show_header(header: Sequence[str]) -> str:
    shown = ", ".join(repr(h) for h in header[:30])
    return shown + (", ..." if len(header) > 30 else "")


def dotted(value: Any, what: str) -> str:
    """A dotted path (`stock.available`), trimmed."""
    if not isinstance(value, str) or not value.strip():
        raise FeedError(f"{what} must be a dotted path such as \"stock.available\"")
    parts = value.strip().split(".")
    if "" in parts:
        raise FeedError(f"{what} {value!r} is not a dotted path (an empty step)")
    return value.strip()


def _known(attr: str) -> None:
    if attr not in _KNOWN:
        raise FeedError(f"mapping.fields names an unknown attribute {attr!r}")


def _csv(data: Mapping[str, Any], header: bool, zip_entry: str | None) -> FeedMapping:
    for key in ("fields", "values"):
        if not isinstance(data.get(key) or {}, dict):
            raise FeedError(f"mapping.{key} must be an object")
    fields: dict[str, int | str] = {}
    for attr, src in (data.get("fields") or {}).items():
        _known(attr)
        if isinstance(src, bool) or not isinstance(src, (int, str)):
            raise FeedError(f"mapping.fields.{attr} must be a column name or a 0-based index")
        if isinstance(src, int) or (not header and src.isdigit()):
            src = int(src)
            if src < 0:
                raise FeedError(f"mapping.fields.{attr}: column index {src} is out of range")
        elif not header:
            raise FeedError(f"mapping.fields.{attr} names column {src!r} but the feed has no "
                            "header row: use a 0-based index")
        fields[attr] = src
    if not header and "externalId" not in fields:
        raise FeedError(missing_external_id(None))
    return FeedMapping(fields, _values(data), zip_entry=zip_entry)


def _values(data: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for attr, vm in (data.get("values") or {}).items():
        if attr not in ATTRIBUTES or attr == "externalId" or not isinstance(vm, dict):
            raise FeedError(f"mapping.values.{attr} must map texts to values of a known "
                            "attribute other than externalId")
        out[attr] = {str(k).strip().lower(): _text(v) for k, v in vm.items()}
    return out


def _text(v: Any) -> str:
    return "" if v is None else v if isinstance(v, str) else orjson.dumps(v).decode()


def _structured_fields(data: Mapping[str, Any], auto: bool) -> dict[str, Any]:
    """The fields (with the preset's), then every reference attribute not named by its own
    name (`"auto": false`: none)."""
    fields = data.get("fields") or {}
    if not isinstance(fields, dict):
        raise FeedError("mapping.fields must be an object")
    if not auto:
        return dict(fields)
    return {**fields, **{a: a for a in ATTRIBUTES if a not in fields}}


def _xml(data: Mapping[str, Any], auto: bool) -> FeedMapping:
    names = xmlpaths.Names(data.get("namespaces"))
    record = data.get("record")
    xmlpaths.record_path(record, names)
    fields = _structured_fields(data, auto)
    for attr, expr in fields.items():
        _known(attr)
        xmlpaths.getter(expr, names, f"mapping.fields.{attr}")
    namespaces = dict(data.get("namespaces") or {})
    return FeedMapping(dict(fields), record=str(record), namespaces=namespaces)


def _json(data: Mapping[str, Any], auto: bool) -> FeedMapping:
    fields: dict[str, int | str] = {}
    for attr, path in _structured_fields(data, auto).items():
        _known(attr)
        fields[attr] = dotted(path, f"mapping.fields.{attr}")
    record = dotted(data["record"], "mapping.record") if data.get("record") else ""
    fmt = data.get("format") or ""
    if not isinstance(fmt, str) or fmt.lower() not in JSON_FORMATS:
        raise FeedError(f"mapping.format {data.get('format')!r}: use \"json\" or \"ndjson\"")
    ndjson = fmt.lower() in ("ndjson", "jsonl")
    if ndjson and record:
        raise FeedError("mapping.record does not apply to newline-delimited JSON")
    nxt = dotted(data["next"], "mapping.next") if data.get("next") else ""
    return FeedMapping(fields, record=record, ndjson=ndjson, next=nxt)
