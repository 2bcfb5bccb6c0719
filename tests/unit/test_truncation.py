"""The end-of-document checks for downloads whose transport could not vouch for their
length: a document that ends where a whole one cannot is a truncated download (CutShort,
then TruncatedError), whatever the chunking; a whole one passes; a vouched one is judged
as before (a CSV may lack its final line break)."""

from __future__ import annotations

import orjson
import pytest

from tests.unit.recordhelp import json_records, make_feed, xml_records
from worker.errors import FeedError, TransientSourceError, TruncatedError
from worker.model import Feed
from worker.parsers import CutShort, RecordBatch
from worker.parsers.xml import XmlSyntaxError
from worker.pipeline import formats
from worker.sources.transfer import Transfer

CSV = (b"external_id,qty,name,price\n"
       b"A,1,plain,1.50\n"
       b'B,2,"quoted, with ""quotes""\nand a line break",2.25\n'
       b"C,3,last,13.74\n")
XML = (b'<?xml version="1.0"?>\n<catalog>\n'
       b"<item><sku>A</sku><price>1.50</price></item>\n"
       b"<item><sku>B</sku><price>13.74</price></item>\n</catalog>\n")
XML_MAPPING = {"record": "/catalog/item", "fields": {"externalId": "sku", "retailPrice": "price"}}
ITEMS = [{"externalId": "A", "retailPrice": 1.5}, {"externalId": "B", "retailPrice": 13.74}]
JSON = orjson.dumps(ITEMS) + b"\n"
JSON_PATH = orjson.dumps({"data": {"items": ITEMS}, "total": 2})
NDJSON = b"".join(orjson.dumps(item) + b"\n" for item in ITEMS)




FEEDS = {
    "csv": (make_feed("ftp_csv"), CSV),
    "xml": (make_feed("xml", XML_MAPPING), XML),
    "json": (make_feed("json"), JSON),
    "json-path": (make_feed("json", {"record": "data.items"}), JSON_PATH),
    "ndjson": (make_feed("json", {"format": "ndjson"}), NDJSON),
    "ndjson-guessed": (make_feed("json"), NDJSON),
}


def read(feed: Feed, data: bytes, vouched: bool, size: int = 7) -> RecordBatch:
    """All the records of `data`, fed `size` bytes at a time, then closed."""
    records = formats.records_for(feed)
    out = RecordBatch(lines=[])
    assert isinstance(out.lines, list)
    batches = [records.feed(data[i:i + size]) for i in range(0, len(data), size)]
    batches.append(records.close(vouched))
    for batch in batches:
        out.rows += batch.rows
        out.lines += batch.lines
        out.errors += batch.errors
    return out


def cuts(data: bytes) -> list[int]:
    """Every length short of the whole document that is not a whole document itself: not
    at the end of a line (CSV, NDJSON; for NDJSON, before the line break either), not in
    the whitespace after the last value."""
    whole = len(data.rstrip())
    return [n for n in range(1, whole)
            if data[n - 1:n] != b"\n" and data[n - 1:n + 1] != b"}\n"]


@pytest.mark.parametrize("kind", FEEDS)
@pytest.mark.parametrize("size", [1, 7, 1 << 20])
def test_a_whole_document_passes_unvouched(kind: str, size: int) -> None:
    feed, data = FEEDS[kind]
    assert read(feed, data, vouched=False, size=size) == read(feed, data, vouched=True,
                                                               size=size)
    assert len(read(feed, data, vouched=False, size=size).rows) >= 2


@pytest.mark.parametrize("kind", FEEDS)
def test_every_cut_of_an_unvouched_document_is_cut_short(kind: str) -> None:
    feed, data = FEEDS[kind]
    for n in cuts(data):
        if kind == "csv" and data[:n].count(b"\n") < 1:
            continue  # no header row yet: the pipeline fails it as "no header row"
        with pytest.raises(CutShort):
            read(feed, data[:n], vouched=False)


def test_csv_without_its_final_line_break_passes_when_vouched() -> None:
    feed, _ = FEEDS["csv"]
    got = read(feed, CSV.rstrip(b"\n"), vouched=True)
    assert got.rows[-1] == ["C", "3", "last", "13.74"]
    with pytest.raises(CutShort, match="the last line has no line break"):
        read(feed, CSV.rstrip(b"\n"), vouched=False)


def test_csv_cut_inside_the_last_field() -> None:
    """The issue's case: 13.74 cut to 13.7 was stored. Vouched, the CSV rule does not
    apply (that transport says the file is whole); unvouched, it fails."""
    feed, _ = FEEDS["csv"]
    cut = CSV[:-2]
    assert read(feed, cut, vouched=True).rows[-1] == ["C", "3", "last", "13.7"]
    with pytest.raises(CutShort, match="no line break"):
        read(feed, cut, vouched=False)


@pytest.mark.parametrize("tail", [b'D,4,"open quote\n', b'D,4,"open quote\nstill open\n',
                                  b'D,4,"open ""quote""\nmore\r\n', b'D,4,"x""\n'])
def test_csv_ending_inside_a_quoted_field(tail: bytes) -> None:
    feed, _ = FEEDS["csv"]
    for size in (1, 5, 1 << 20):
        with pytest.raises(CutShort, match="inside a quoted field"):
            read(feed, CSV + tail, vouched=False, size=size)
        # Vouched: read as before, the quote closed at the end.
        assert read(feed, CSV + tail, vouched=True, size=size).rows[-1][0] == "D"


@pytest.mark.parametrize("tail", [b'D,4,"closed",5\n', b'D,4,not"quoted,5\n',
                                  b'D,4,"a""b",5\r\n', b'D,4,"x"y,5\n', b"\n\n"])
def test_csv_quotes_that_close_pass(tail: bytes) -> None:
    feed, _ = FEEDS["csv"]
    read(feed, CSV + tail, vouched=False, size=3)


def test_csv_cut_inside_a_character() -> None:
    feed = make_feed("ftp_csv")
    data = "external_id,name\nA,café\nB,café\n".encode()  # not ASCII: no cp1252 fallback
    with pytest.raises(CutShort, match="inside a character"):
        read(feed, data[:-2], vouched=False)
    with pytest.raises(FeedError, match="not valid UTF-8"):
        read(feed, data[:-2], vouched=True)


def test_xml_unclosed_root_names_it_and_stays_malformed_when_vouched() -> None:
    feed, _ = FEEDS["xml"]
    cut = XML[:XML.index(b"13.74") + 4]
    with pytest.raises(CutShort, match=r"^the document's root element is not closed "
                                       r"\(libxml2 at line 4, column \d+: Premature end"):
        read(feed, cut, vouched=False)
    with pytest.raises(XmlSyntaxError, match="Premature end of data"):
        read(feed, cut, vouched=True)


def test_xml_malformed_before_the_end_is_not_cut_short() -> None:
    bad = XML.replace(b"</item>\n<item>", b"</item>\n<<item>")
    with pytest.raises(XmlSyntaxError) as caught:
        read(FEEDS["xml"][0], bad, vouched=False)
    assert not isinstance(caught.value, CutShort)


def test_an_empty_document_stays_empty() -> None:
    with pytest.raises(XmlSyntaxError, match="the document is empty"):
        xml_records(XML_MAPPING).close(vouched=False)
    with pytest.raises(FeedError, match="the document is empty"):
        json_records({}).close(vouched=False)


def test_json_unclosed_array_and_ndjson_last_line() -> None:
    with pytest.raises(CutShort, match=r"^the JSON document is not closed \(premature EOF"):
        read(FEEDS["json"][0], JSON[:-3], vouched=False)
    with pytest.raises(FeedError, match="malformed JSON"):
        read(FEEDS["json"][0], JSON[:-3], vouched=True)
    with pytest.raises(CutShort, match=r"^the last line is not a whole JSON value"):
        read(FEEDS["ndjson"][0], NDJSON[:-3], vouched=False)


def test_ndjson_last_line_without_its_line_break_is_whole() -> None:
    """Decided: a last line that is a whole value needs no line break (its closing brace
    ends it); many writers leave it out."""
    for kind in ("ndjson", "ndjson-guessed"):
        got = read(FEEDS[kind][0], NDJSON.rstrip(b"\n"), vouched=False)
        assert [row[0] for row in got.rows] == ["A", "B"]


def test_a_shape_error_is_not_cut_short() -> None:
    """A whole document of the wrong shape fails as before, truncation or not."""
    with pytest.raises(FeedError, match="not an array of records") as caught:
        read(make_feed("json"), b'{"a": 1}', vouched=False)
    assert not isinstance(caught.value, CutShort)


@pytest.mark.parametrize(("vouched", "compression", "fails"), [
    (False, None, True), (False, "none", True), (True, None, False),
    (False, "gzip", False), (False, "zip", False),
])
def test_finish_judges_the_end_unless_transport_or_compression_vouched(
        vouched: bool, compression: str | None, fails: bool) -> None:
    cut = CSV[:-2]
    records = formats.records_for(FEEDS["csv"][0])
    records.feed(cut)
    transfer = Transfer(vouched=vouched, received=3_276_800)
    if not fails:
        formats.finish(records, transfer, compression)
        return
    with pytest.raises(TruncatedError) as caught:
        formats.finish(records, transfer, compression)
    assert str(caught.value) == (
        "the download was cut short: 3,276,800 bytes received, the last line has no line "
        "break (a CSV must end with one when the transport cannot vouch for its length)")
    assert isinstance(caught.value, TransientSourceError)
