"""A feed's mapping checked when the feed is saved, by the code its pulls use: the
mapping parsed (feedmapping.parse_mapping: XPaths compiled, dotted paths, columns), the
mapper built as a pull builds it (pipeline/formats.mapping_for), and each value of
`values` put through that mapper; the first problem answers 422 with a JSON pointer."""

from __future__ import annotations

import re
from typing import Any

from worker.api.errors import invalid, pointer
from worker.errors import FeedError
from worker.feedmapping import has_header_row, parse_mapping
from worker.mapping import Mapper
from worker.model import Feed, FeedMapping
from worker.pipeline.formats import mapping_for

# "mapping.fields.externalId must ..." -> /mapping/fields/externalId
_WHERE = re.compile(r"\bmapping((?:\.[A-Za-z_][\w-]*(?::[\w-]+)?)*)")
_UNKNOWN = re.compile(r"unknown attribute '([^']+)'")


def check_mapping(raw: Any, resource_type: str, csv_has_header: bool,
                  decimal_notation: str = "decimal") -> dict[str, Any]:
    """The mapping to store; raises a 422 naming the first problem."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise invalid(pointer("mapping"), "must be an object")
    try:
        parsed = parse_mapping(raw, resource_type, csv_has_header)
        if resource_type == "webhook":  # pushes read only its rules (parsed as theirs)
            return raw
        feed = Feed(0, "", True, resource_type, None, None, csv_has_header, decimal_notation,
                    None, parsed, False)
        header = _header(parsed, feed)
        mapper = Mapper(mapping_for(feed), header, decimal_notation)
    except FeedError as exc:
        raise invalid(_pointer(str(exc)), str(exc)) from None
    _check_values(raw, mapper, _sum_columns(parsed, header))
    return raw


def _pointer(reason: str) -> str:
    m = _WHERE.search(reason)
    if m is None:
        return pointer("mapping")
    steps = [s for s in m.group(1).split(".") if s]
    unknown = _UNKNOWN.search(reason)
    if steps == ["fields"] and unknown:
        steps.append(unknown.group(1))
    return pointer("mapping", *steps)


def _header(mapping: FeedMapping, feed: Feed) -> list[str] | None:
    """The header the mapper will meet, as far as the mapping tells: for XML and JSON the
    parser's (the mapped attributes' names); for a CSV with a header row, the columns the
    mapping and its quantity sum name, and the template's for the attributes it does not
    map; none for a CSV without one."""
    if feed.resource_type in ("xml", "json"):
        return list(mapping.fields)
    if not has_header_row(feed.resource_type, feed.csv_has_header):
        return None
    sources = [*mapping.fields.values(),
               *(s for _, s in (mapping.rules.quantity.sources if mapping.rules.quantity
                                else ()))]
    width = max([s + 1 for s in sources if isinstance(s, int)] or [0])
    header = [f"column {i}" for i in range(width)]
    header += [s for s in dict.fromkeys(sources) if isinstance(s, str) and s not in header]
    # Attributes it leaves to the file's own column names (the template's): by their names.
    header += [a for a in ("externalId", *mapping.values) if a not in mapping.fields]
    return header


def _sum_columns(mapping: FeedMapping, header: list[str] | None) -> list[int]:
    """The columns of the quantity sum's sources, if the rules sum quantities."""
    quantity = mapping.rules.quantity
    if quantity is None:
        return []
    return [src if isinstance(src, int) else header.index(src) if header else 0
            for _, src in quantity.sources]


def _check_values(raw: dict[str, Any], mapper: Mapper, sum_columns: list[int]) -> None:
    """One row per value of `values`, mapped: a value the attribute's rules refuse is a
    mistake in the mapping. A quantity sum maps inventoryQuantity's values in each of its
    sources: the first stands for them."""
    columns = dict(mapper.source)
    if sum_columns:
        columns["inventoryQuantity"] = sum_columns[0]
    width = mapper.width or max([*columns.values(), *sum_columns]) + 1
    for attr, texts in (raw.get("values") or {}).items():
        column = columns.get(attr)
        if column is None:
            raise invalid(pointer("mapping", "values", attr),
                          f"the mapping has no column for {attr}")
        for text in texts:
            row = [""] * width
            row[mapper.ext_index] = "x"
            row[column] = str(text)
            batch = mapper.map([row], [1])
            if batch.rejects:
                raise invalid(pointer("mapping", "values", attr, str(text)),
                              batch.rejects[0].reason)
