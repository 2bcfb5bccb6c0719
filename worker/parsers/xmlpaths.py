"""XML mapping paths: prefixed names (`g:id`) from `mapping.namespaces`, the record's
absolute path (`mapping.record`), and the readers of the fields (`mapping.fields`, XPaths
relative to the record). parse_mapping builds them once to check a feed's mapping; the
XML parser builds them again to read with.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from lxml import etree

from worker.errors import FeedError

_NAME = r"[^\W\d][\w.\-]*"
_QNAME = re.compile(rf"(?:({_NAME}):)?({_NAME})")
_STEP = rf"(?:{_NAME}:)?{_NAME}"
_SIMPLE_FIELD = re.compile(rf"{_STEP}(?:/{_STEP})*(?:/@{_STEP})?|@{_STEP}")
_XML_NS = "http://www.w3.org/XML/1998/namespace"

Element = etree._Element
Getter = Callable[[Element, dict[Any, Element]], str]


class RecordError(Exception):
    """A record whose field could not be read (the others go on)."""


def element_text(el: Element) -> str:
    """An element's text content, trimmed (its descendants' text too, as XPath's string())."""
    if len(el):
        return "".join(cast("Iterable[str]", el.itertext())).strip()
    text = el.text
    return text.strip() if text else ""


def xpath_text(result: Any) -> str:
    if isinstance(result, list):
        if not result:
            return ""
        result = result[0]
    if isinstance(result, etree._Element):
        return element_text(result)
    if isinstance(result, bool):
        return "true" if result else "false"
    if isinstance(result, float):
        if result != result or result in (float("inf"), float("-inf")):
            return ""
        return str(int(result)) if result.is_integer() else repr(result)
    if isinstance(result, (str, bytes)):
        return (result.decode() if isinstance(result, bytes) else str(result)).strip()
    return ""


class Names:
    """Prefixed names (`g:id`) -> lxml's {uri}local, from mapping.namespaces."""

    def __init__(self, namespaces: Any) -> None:
        if namespaces is None:
            namespaces = {}
        if not isinstance(namespaces, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in namespaces.items()):
            raise FeedError("mapping.namespaces must map prefixes to namespace URIs")
        self.map: dict[str, str] = {"xml": _XML_NS, **namespaces}

    def clark(self, qname: str, what: str) -> str:
        m = _QNAME.fullmatch(qname)
        if m is None:
            raise FeedError(f"{what}: {qname!r} is not an element name")
        prefix, local = m.groups()
        if prefix is None:
            return local
        if prefix not in self.map:
            raise FeedError(f"{what}: namespace prefix {prefix!r} is not declared in "
                            "mapping.namespaces")
        return f"{{{self.map[prefix]}}}{local}"


def record_path(record: Any, names: Names) -> list[str]:
    if not isinstance(record, str) or not record.startswith("/") or record.startswith("//"):
        raise FeedError("mapping.record must be the absolute path of the record element, "
                        "such as \"/rss/channel/item\"")
    steps = record.strip().strip("/").split("/")
    return [names.clark(step, "mapping.record") for step in steps]


def getter(expr: Any, names: Names, what: str) -> tuple[Getter | str, bool]:
    """The field's reader (or, for the text of a child element, the child's tag), and
    whether it wants the record's first child by tag."""
    if not isinstance(expr, str) or not expr.strip():
        raise FeedError(f"{what} must be an XPath relative to the record element")
    expr = expr.strip()
    if expr.startswith("/") or ".." in expr:
        raise FeedError(f"{what} {expr!r}: the path must stay inside the record element "
                        "(the rest of the document is not kept)")
    if _SIMPLE_FIELD.fullmatch(expr):
        steps = expr.split("/")
        attr = names.clark(steps.pop()[1:], what) if steps[-1].startswith("@") else None
        tags = [names.clark(s, what) for s in steps]
        if len(tags) == 1 and attr is None:
            return tags[0], True
        return _simple(tags, attr), bool(tags)
    try:
        xpath = etree.XPath(expr, namespaces=names.map, smart_strings=False)
        xpath(etree.Element("probe"))  # unknown prefixes and functions fail here
    except etree.XPathError as exc:
        raise FeedError(f"{what} {expr!r} is not an XPath lxml can use: {exc}") from None

    def evaluate(el: Element, first: dict[Any, Element]) -> str:
        try:
            return xpath_text(xpath(el))
        except Exception as exc:  # XPath errors, and EXSLT's (re.error, ...)
            raise RecordError(f"{what} {expr!r}: {exc}") from None

    return evaluate, False


def _simple(tags: list[str], attr: str | None) -> Getter:
    if not tags:
        name = attr or ""

        def own_attribute(el: Element, first: dict[Any, Element]) -> str:
            value = el.get(name)
            return value.strip() if value else ""

        return own_attribute
    head, rest = tags[0], tags[1:]

    def child(el: Element, first: dict[Any, Element]) -> str:
        node = first.get(head)
        for tag in rest:
            if node is None:
                return ""
            node = next(node.iterchildren(tag), None)
        if node is None:
            return ""
        if attr is None:
            return element_text(node)
        value = node.get(attr)
        return value.strip() if value else ""

    return child


class Fields:
    """The header, and how each of its values is read: the text of a child element (the
    common case, read inline) or a getter."""

    def __init__(self, fields: Mapping[str, object], names: Names) -> None:
        self.header: list[str] = []
        self.texts: list[tuple[int, str]] = []
        self.getters: list[tuple[int, Getter]] = []
        self.children = False
        for i, (attr, expr) in enumerate(fields.items()):
            read, wants_children = getter(expr, names, f"mapping.fields.{attr}")
            self.header.append(attr)
            if isinstance(read, str):
                self.texts.append((i, read))
            else:
                self.getters.append((i, read))
            self.children = self.children or wants_children

    def row(self, el: Element) -> list[str]:
        first: dict[Any, Element] = {}
        if self.children:
            for child in el:
                first.setdefault(child.tag, child)
        row = [""] * len(self.header)
        get = first.get
        for i, tag in self.texts:
            node = get(tag)
            if node is not None:
                if len(node):
                    row[i] = element_text(node)
                else:
                    text = node.text
                    if text:
                        row[i] = text.strip()
        for i, getter in self.getters:
            row[i] = getter(el, first)
        return row


