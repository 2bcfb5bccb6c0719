"""What a pull's records gave each mapped attribute, judged once the file is read: a path
of the feed's own that matched no record fails the run (it would write NULL everywhere),
one that matched few records is a warning, and what a preset or the template names map but
no record has is not written (the stored values stay).

Pure: the counts come from the mapper (Mapper.matched), the verdict goes to pipeline/pull.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from worker.model import FeedMapping

SHARE_SETTING = "FEED_WORKER_MIN_ATTRIBUTE_MATCH_SHARE"


@dataclass
class Verdict:
    errors: list[str] = field(default_factory=list)    # fail the run
    warnings: list[str] = field(default_factory=list)  # details.warnings
    unwritten: set[str] = field(default_factory=set)   # attributes left as stored


def judge(mapping: FeedMapping, resource_type: str, matched: Mapping[str, int],
          records: int, min_share: float) -> Verdict:
    """The verdict on `matched` (attribute -> records with a value) out of `records`."""
    out = Verdict()
    if records == 0:
        return out
    structured = resource_type in ("xml", "json")
    for attr, count in matched.items():
        own = attr in mapping.fields and attr not in mapping.optional
        if not own:
            if structured and count == 0:
                out.unwritten.add(attr)
            continue
        where = _where(attr, mapping, resource_type)
        if count == 0 and structured:
            out.errors.append(f"{where} matched no record of {records}: "
                              f"{_hint(attr, mapping, resource_type)}")
        elif count == 0:
            out.warnings.append(f"{where} is blank in all {records} records")
        elif count < min_share * records:
            out.warnings.append(f"{where} has a value in only {count} of {records} records "
                                f"({count / records:.0%}; {SHARE_SETTING} is {min_share:g})")
    return out


def _where(attr: str, mapping: FeedMapping, resource_type: str) -> str:
    src = mapping.fields[attr]
    if resource_type == "xml":
        return f"{attr} (XPath {src!r})"
    if resource_type == "json":
        return f"{attr} (path {src!r})"
    return f"{attr} (column {src!r})"


def _hint(attr: str, mapping: FeedMapping, resource_type: str) -> str:
    src = str(mapping.fields[attr])
    if resource_type == "xml":
        if mapping.namespaces and ":" not in src:
            prefixes = ", ".join(f"{p}:" for p in mapping.namespaces)
            return (f"names without a prefix are in no namespace; elements of a namespaced "
                    f"feed need theirs ({prefixes}, e.g. {next(iter(mapping.namespaces))}:"
                    f"{src.split('/')[0]})")
        return ("the XPath is relative to the record element and case-sensitive; check it "
                "against a record of the file")
    return ("keys are case-sensitive and the path is dotted from the record; check it "
            "against a record of the file")


def no_records(mapping: FeedMapping, resource_type: str) -> str:
    """Why a first pull that found no records fails."""
    if resource_type == "xml":
        return (f"no records at {mapping.record} (mapping.record): no element has that "
                "path from the root")
    if mapping.ndjson:
        return "no records: the newline-delimited JSON has no lines"
    if mapping.record:
        return (f"no records at {mapping.record} (mapping.record): the path is missing or "
                "holds an empty array")
    return "no records at the document's top level: set mapping.record to the array's path"
