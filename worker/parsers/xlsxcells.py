"""An XLSX cell's text, typed as python-calamine types it and written as
worker/parsers/cells.py writes calamine's values, so that a sheet reads the same through
the streaming reader (worker/parsers/xlsxstream.py) as it did through calamine: numbers by
the shortest text of their value (`3`, `19.9`, a barcode's digits), numbers in a date style
(xl/styles.xml) as ISO dates, times or date-times, in an elapsed-time style (`[h]:mm`) as
seconds; `TRUE`/`FALSE`; a formula's saved result, none: empty; an error cell (`#N/A`)
empty, named in its row's error cells.
"""

from __future__ import annotations

import datetime
import html
import re
from typing import Any

from worker.parsers.cells import cell_text, number_text
from worker.parsers.xlsxparts import DURATION, SharedStrings, column_index

Row = tuple[int, list[str], list[tuple[int, str]] | None]  # number, texts, error cells

# a cell's kind: a number, a shared string, ..., a number in a date style (DATED + kind)
NUMBER, SHARED, STR, INLINE, BOOL, ERROR, ISO, OTHER, DATED = range(9)
_KINDS = {"s": SHARED, "str": STR, "inlineStr": INLINE, "b": BOOL, "e": ERROR, "d": ISO}
_EPOCH = datetime.datetime(1899, 12, 30)
_DAYS_1904 = 1462.0
_PLAIN = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?").fullmatch
_T = re.compile(r"<t\b[^>]*>([^<]*)</t>")
_PHONETIC = re.compile(r"<rPh\b.*?</rPh>", re.S)
COLUMNS: dict[str, int] = {}  # column letters -> index, shared by all sheets


class Cells:
    """How one workbook's cells read: its date styles, date system and shared strings."""

    def __init__(self, ns: str, dates: dict[str, int], date1904: bool,
                 strings: SharedStrings | None) -> None:
        self.ns = ns
        self.dates = dates  # style index (as written) -> DATETIME or DURATION
        self.date1904 = date1904
        self.strings = strings

    def kind(self, t: str | None, s: str | None) -> int:
        """A cell's kind by its type and style attributes."""
        if t is None or t == "n":
            dated = self.dates.get(s) if s is not None else None
            return DATED + dated if dated else NUMBER
        return _KINDS.get(t, OTHER)

    def value(self, kind: int, v: str) -> str:
        """The text of a cell's non-empty `<v>` (shared strings and numbers aside: the
        reader's loop has them)."""
        if kind >= DATED:
            return self.dated(v, kind - DATED)
        if kind == NUMBER:
            return number(v)
        if kind == SHARED:
            return self.strings[int(v)] if self.strings is not None and v.isdigit() else ""
        if kind in (STR, OTHER):
            return html.unescape(v) if "&" in v else v
        if kind == BOOL:
            return "FALSE" if v == "0" else "TRUE"
        if kind == ISO:
            return _iso(v)
        return ""  # an error, or an inline string's stray <v>

    def dated(self, v: str, kind: int) -> str:
        """A number in a date or elapsed-time style, as python-calamine gives it: below 1
        a time, whole a date, else a date-time (to the millisecond)."""
        try:
            value = float(v)
        except ValueError:
            return v
        if kind == DURATION:
            return cell_text(datetime.timedelta(milliseconds=round(value * 86_400_000)))
        days = value + _DAYS_1904 if self.date1904 else value
        if days < 60:  # 1900 was no leap year, though Excel counts its 29 February
            days += 1
        try:
            moment = _EPOCH + datetime.timedelta(milliseconds=round(days * 86_400_000))
        except OverflowError:
            return number(v)
        if value < 1.0:
            return cell_text(moment.time())
        if value.is_integer():
            return cell_text(moment.date())
        return cell_text(moment)

    def row(self, el: Any, previous: int) -> Row:
        """A parsed `<row>` element's texts (the reader's way for parts it does not
        search: see xlsxstream); its number, else the one after `previous`."""
        ns = self.ns
        c_tag, v_tag, is_tag, t_tag = f"{{{ns}}}c", f"{{{ns}}}v", f"{{{ns}}}is", f"{{{ns}}}t"
        r = el.get("r")
        number = int(r) if r else previous + 1
        texts: list[str] = []
        errors: list[tuple[int, str]] | None = None
        for c in el:
            if c.tag != c_tag:
                continue
            ref = c.get("r")
            column = column_of(ref.rstrip("0123456789")) if ref else len(texts)
            kind = self.kind(c.get("t"), c.get("s"))
            if kind == INLINE:
                inline = c.find(is_tag)
                text = "" if inline is None else "".join(
                    t.text or "" for t in inline.iter(t_tag)
                    if t.getparent().tag != f"{{{ns}}}rPh")
            else:
                v = c.findtext(v_tag)
                text = self.value(kind, v) if v else ""
                if kind == ERROR and v:
                    errors = [*(errors or ()), (column, v)]
            place(texts, column, text)
        return number, texts, errors


def place(texts: list[str], column: int, text: str) -> None:
    """Puts a cell's text in its column of the row's texts so far."""
    n = len(texts)
    if column == n:
        texts.append(text)
    elif column > n:
        texts.extend([""] * (column - n))
        texts.append(text)
    else:
        texts[column] = text


def column_of(letters: str) -> int:
    column = COLUMNS.get(letters, -1)
    if column < 0:
        column = COLUMNS[letters] = column_index(letters)
    return column


def number(v: str) -> str:
    """A number cell's text, as cells.number_text writes its value: a plain decimal of
    at most 15 digits is its own shortest text once its trailing zeros are dropped."""
    if len(v) <= 15 and _PLAIN(v):
        if "." in v:
            v = v.rstrip("0").rstrip(".")
        if v != "-0":
            return v
    try:
        return number_text(float(v))
    except ValueError:
        return v


def inline(content: str) -> str:
    """An inline string's text (`<is>`'s content): its `<t>`s, phonetic runs left out."""
    content = _PHONETIC.sub("", content)
    text = "".join(_T.findall(content))
    return html.unescape(text) if "&" in text else text


def _iso(v: str) -> str:
    """An ISO 8601 date cell (`t="d"`) as the reader gives it: a date, a date-time or a
    time, else its text."""
    for parse in (datetime.date.fromisoformat, datetime.datetime.fromisoformat,
                  datetime.time.fromisoformat):
        try:
            return cell_text(parse(v))
        except ValueError:
            continue
    return v
