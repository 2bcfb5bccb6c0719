"""XmlRecords: XML bytes -> the CSV parser's batches (rows in header order, record
numbers, unreadable records), chunk by chunk, in flat memory, refusing what is unsafe."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from tests.unit.recordhelp import parse_with, values_mapper, xml_records
from worker.errors import FeedError
from worker.model import ATTRIBUTES
from worker.parsers import RecordBatch
from worker.parsers.xml import XmlRecords, XmlSyntaxError

G = "http://base.google.com/ns/1.0"

MERCHANT = f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:g="{G}">
  <channel>
    <title>Example Store</title>
    <link>https://store.example.com</link>
    <description>All our products</description>
    <item>
      <g:id>TV-1001</g:id>
      <title>Smart TV 55" &amp; stand</title>
      <description><![CDATA[A <b>big</b> screen.]]></description>
      <link>https://store.example.com/tv-1001</link>
      <g:image_link>https://store.example.com/img/tv-1001.jpg</g:image_link>
      <g:condition>new</g:condition>
      <g:availability>in stock</g:availability>
      <g:price>105.29 USD</g:price>
      <g:sale_price>99.00 USD</g:sale_price>
      <g:brand>Acme</g:brand>
      <g:gtin>4006381333931</g:gtin>
      <g:mpn>TV55-A</g:mpn>
      <g:item_group_id>TV55</g:item_group_id>
      <g:shipping>
        <g:country>US</g:country>
        <g:price>4.99 USD</g:price>
      </g:shipping>
      <g:shipping_weight>12.5 kg</g:shipping_weight>
    </item>
    <item>
      <g:id>TV-1002</g:id>
      <title>Smart TV 65"</title>
      <g:availability>out of stock</g:availability>
      <g:price>1299.00 USD</g:price>
    </item>
  </channel>
</rss>
""".encode()

MERCHANT_MAPPING: dict[str, Any] = {
    "record": "/rss/channel/item",
    "namespaces": {"g": G},
    "fields": {
        "externalId": "g:id",
        "name": "title",
        "retailPrice": "g:price",
        "compareAtPrice": "g:sale_price",
        "inventoryPolicy": "g:availability",
        "barcode": "g:gtin",
        "mpn": "g:mpn",
        "externalGroupId": "g:item_group_id",
        "images": "g:image_link",
        "description": "description",
        "grams": "g:shipping/g:price",
    },
}


def parse(mapping: dict[str, Any], chunks: Iterable[bytes]) -> RecordBatch:
    """Every batch of a document fed as `chunks`, then close(), put together."""
    return parse_with(xml_records, mapping, chunks)


def feed_all(parser: XmlRecords, chunks: Iterable[bytes], seen: list[RecordBatch]) -> None:
    """Feeds and closes, keeping the batches (up to an error) in `seen`."""
    for chunk in chunks:
        seen.append(parser.feed(chunk))
    seen.append(parser.close())


def sized(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)] or [b""]


def failure(mapping: dict[str, Any], chunks: Iterable[bytes]) -> FeedError:
    with pytest.raises(FeedError) as info:
        parse(mapping, chunks)
    return info.value


def test_google_merchant_feed() -> None:
    parser = xml_records(MERCHANT_MAPPING)
    assert parser.header == list(MERCHANT_MAPPING["fields"])
    batch = parse(MERCHANT_MAPPING, [MERCHANT])
    assert batch.errors == []
    assert list(batch.lines) == [1, 2]
    first, second = (dict(zip(parser.header, row, strict=True)) for row in batch.rows)
    assert first == {
        "externalId": "TV-1001", "name": 'Smart TV 55" & stand', "retailPrice": "105.29 USD",
        "compareAtPrice": "99.00 USD", "inventoryPolicy": "in stock",
        "barcode": "4006381333931", "mpn": "TV55-A", "externalGroupId": "TV55",
        "images": "https://store.example.com/img/tv-1001.jpg",
        "description": "A <b>big</b> screen.", "grams": "4.99 USD",
    }
    assert second["externalId"] == "TV-1002"
    assert second["inventoryPolicy"] == "out of stock"
    assert second["compareAtPrice"] == second["description"] == second["grams"] == ""


def test_every_split_and_every_chunk_size_give_the_same() -> None:
    whole = parse(MERCHANT_MAPPING, [MERCHANT])
    for k in range(len(MERCHANT) + 1):
        assert parse(MERCHANT_MAPPING, [MERCHANT[:k], MERCHANT[k:]]) == whole, f"split at {k}"
    for size in (1, 2, 3, 7, 64, 1000):
        assert parse(MERCHANT_MAPPING, sized(MERCHANT, size)) == whole, f"chunks of {size}"


def test_the_mapper_takes_the_rows_unchanged() -> None:
    doc = (b"<feed><p><id>A1</id><qty>5</qty><sku> S-1 </sku></p>"
           b"<p><id>A2</id><qty>0</qty></p></feed>")
    mapping = {"record": "/feed/p",
               "fields": {"externalId": "id", "inventoryQuantity": "qty", "vendorSku": "sku"}}
    parser = xml_records(mapping)
    batch = parse(mapping, [doc])
    mapper = values_mapper(parser.header)
    mapped = mapper.map(batch.rows, batch.lines)
    assert mapped.rejects == []
    assert mapped.count == 2
    assert {"external_id", "inventory_quantity", "vendor_sku"} <= set(mapper.columns)


def test_default_namespace_needs_a_prefix_in_the_mapping() -> None:
    doc = (b'<feed xmlns="http://www.w3.org/2005/Atom" xmlns:g="urn:g">'
           b"<entry><id>1</id><g:stock>3</g:stock></entry>"
           b"<entry><id>2</id></entry></feed>")
    mapping = {"record": "/a:feed/a:entry", "namespaces": {"a": "http://www.w3.org/2005/Atom",
                                                          "g": "urn:g"},
               "fields": {"externalId": "a:id", "inventoryQuantity": "g:stock"}}
    assert parse(mapping, [doc]).rows == [["1", "3"], ["2", ""]]
    # Unprefixed names are in no namespace (XPath 1.0): nothing matches.
    assert parse({**mapping, "record": "/feed/entry"}, [doc]).rows == []


def test_attributes_nested_paths_and_missing_fields() -> None:
    doc = (b'<catalog xmlns:x="urn:x"><product id="p1" x:code="C1">'
           b'<stock qty="7"><warehouse name="north"> 3 </warehouse></stock>'
           b"<price><amount>9.99</amount></price></product>"
           b'<product id="p2"><stock/></product></catalog>')
    mapping = {"record": "/catalog/product", "namespaces": {"x": "urn:x"},
               "fields": {"externalId": "@id", "barcode": "@x:code",
                          "inventoryQuantity": "stock/@qty", "retailPrice": "price/amount",
                          "vendorSku": "stock/warehouse/@name", "grams": "stock/warehouse",
                          "mpn": "no/such/path", "name": "@missing"}}
    assert parse(mapping, [doc]).rows == [
        ["p1", "C1", "7", "9.99", "north", "3", "", ""],
        ["p2", "", "", "", "", "", "", ""],
    ]


def test_text_content_is_trimmed_and_includes_children_and_cdata() -> None:
    doc = (b"<r><i><n>\n  Caf\xc3\xa9 <b>au</b> lait <!-- no --><![CDATA[&co]]>\n</n>"
           b"<e></e><s>  </s></i></r>")
    mapping = {"record": "/r/i", "fields": {"externalId": "n", "name": "e", "mpn": "s"}}
    assert parse(mapping, [doc]).rows == [["Caf\u00e9 au lait &co", "", ""]]


def test_general_xpaths() -> None:
    doc = (b"<r><i><img>a</img><img>b</img><t>  x   y </t><n>3</n><n>4</n></i></r>")
    mapping = {"record": "/r/i",
               "fields": {"externalId": "img[2]", "name": "normalize-space(t)",
                          "inventoryQuantity": "count(img)", "grams": "sum(n) div 2",
                          "mpn": "img[last()]/text()", "barcode": "boolean(img)",
                          "vendorSku": "zzz[1]"}}
    assert parse(mapping, [doc]).rows == [["b", "x y", "2", "3.5", "b", "true", ""]]


def test_only_elements_on_the_record_path_are_records() -> None:
    doc = (b"<rss><channel><item><id>1</id><item><id>inner</id></item></item>"
           b"<other><item><id>elsewhere</id></item></other><item><id>2</id></item>"
           b"</channel><item><id>top</id></item></rss>")
    mapping = {"record": "/rss/channel/item", "fields": {"externalId": "id"}}
    batch = parse(mapping, [doc])
    assert batch.rows == [["1"], ["2"]]
    assert list(batch.lines) == [1, 2]
    assert parse({**mapping, "record": "/rss/item"}, [doc]).rows == [["top"]]


def test_the_root_can_be_the_record() -> None:
    assert parse({"record": "/item", "fields": {"externalId": "id"}},
                 [b"<item><id>9</id></item>"]).rows == [["9"]]
    assert parse({"record": "/r/item", "fields": {"externalId": "id"}},
                 [b"<item><id>9</id></item>"]).rows == []


def test_without_fields_child_elements_named_like_the_attributes() -> None:
    parser = xml_records({"record": "/r/i"})
    assert parser.header == list(ATTRIBUTES)
    batch = parse({"record": "/r/i"},
                  [b"<r><i><externalId>1</externalId><inventoryQuantity>4</inventoryQuantity>"
                   b"<color>red</color></i></r>"])
    row = dict(zip(ATTRIBUTES, batch.rows[0], strict=True))
    assert row["externalId"] == "1"
    assert row["inventoryQuantity"] == "4"
    assert row["name"] == ""


def test_an_unreadable_record_is_an_error_and_the_rest_go_on() -> None:
    # An EXSLT regular expression taken from the record: the second one's is broken.
    doc = (b"<r><i><id>1</id><p>b</p><t>abc</t></i><i><id>2</id><p>(</p><t>abc</t></i>"
           b"<i><id>3</id><p>c</p><t>abc</t></i></r>")
    mapping = {"record": "/r/i", "namespaces": {"re": "http://exslt.org/regular-expressions"},
               "fields": {"externalId": "id", "name": "re:replace(t, p, 'g', '')"}}
    for chunks in ([doc], sized(doc, 1)):
        batch = parse(mapping, chunks)
        assert batch.rows == [["1", "ac"], ["3", "ab"]]
        assert list(batch.lines) == [1, 3]
        [(n, raw, reason)] = batch.errors
        assert n == 2
        assert raw.startswith("<i><id>2</id>")
        assert "mapping.fields.name" in reason


@pytest.mark.parametrize(("doc", "line", "column", "reason"), [
    (b"<r><i><id>1</id></i>\n<i><id>2</i></r>", 2, 13, "mismatch"),
    (b"<r><i><id>1</id></i>\n<i><id>2</id>", 2, 14, "end of data"),
    (b"<r>\n  <i><id>1&nbsp;</id></i></r>", 2, 17, "Entity 'nbsp' not defined"),
    (b"<r><i><g:id>1</g:id></i></r>", 1, 12, "Namespace prefix g"),
    (b"<r><i a='1' a='2'/></r>", 1, 18, "Attribute a redefined"),
    (b"<r><i>\x01</i></r>", 1, 7, "invalid Char"),
    (b"<r></r><r/>", 1, 8, "Extra content"),
])
def test_malformed_xml_names_line_and_column(doc: bytes, line: int, column: int,
                                             reason: str) -> None:
    mapping = {"record": "/r/i", "fields": {"externalId": "id"}}
    for chunks in ([doc], sized(doc, 1), sized(doc, 5)):
        error = failure(mapping, chunks)
        assert isinstance(error, XmlSyntaxError)
        assert (error.line, error.column) == (line, column), str(error)
        assert reason.lower() in str(error).lower()
        assert f"line {line}, column {column}" in str(error)


def test_empty_document() -> None:
    error = failure({"record": "/r/i"}, [b""])
    assert "empty" in str(error)


def test_a_failed_parser_stays_failed() -> None:
    parser = xml_records({"record": "/r/i"})
    with pytest.raises(XmlSyntaxError):
        parser.feed(b"<r><i></r>")
    with pytest.raises(XmlSyntaxError):
        parser.feed(b"<i/>")
    with pytest.raises(XmlSyntaxError):
        parser.close()


# -- untrusted documents

LAUGHS = (b'<?xml version="1.0"?>\n<!DOCTYPE r [\n <!ENTITY a "aaaaaaaaaa">\n'
          + b"".join(f' <!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">\n'.encode()
                     for i in range(9))
          + b"]>\n<r><i><id>&j;</id></i></r>")
QUADRATIC = (b'<!DOCTYPE r [<!ENTITY a "' + b"x" * 50_000 + b'">]><r><i><id>'
             + b"&a;" * 10_000 + b"</id></i></r>")
PASSWD = (b'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
          b"<r><i><id>&x;</id></i><i><id>2</id></i></r>")
PARAMETER = (b'<!DOCTYPE r [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>'
             b"<r><i><id>1</id></i></r>")
NETWORK = (b'<!DOCTYPE r [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]>'
           b"<r><i><id>&x;</id></i></r>")
ID = {"record": "/r/i", "fields": {"externalId": "id"}}


@pytest.mark.parametrize("doc", [LAUGHS, QUADRATIC, PASSWD, PARAMETER, NETWORK],
                         ids=["billion-laughs", "quadratic", "file", "parameter", "network"])
def test_documents_declaring_entities_are_refused_fast(doc: bytes) -> None:
    for chunks in ([doc], sized(doc, 3)):
        t = time.perf_counter()
        error = failure(ID, chunks)
        assert time.perf_counter() - t < 1
        assert isinstance(error, XmlSyntaxError)
        assert "declares entities" in str(error)
        assert error.line is not None
        assert error.column is not None


def test_entities_are_refused_before_libxml2_reads_them() -> None:
    # The declaration is on line 2, column 16; libxml2 never got the bytes.
    error = failure(ID, [PASSWD])
    assert isinstance(error, XmlSyntaxError)
    assert (error.line, error.column) == (2, 14)


@pytest.mark.parametrize("doc", [LAUGHS, QUADRATIC, PASSWD, PARAMETER, NETWORK],
                         ids=["billion-laughs", "quadratic", "file", "parameter", "network"])
def test_entities_in_another_encoding_are_refused_too(doc: bytes) -> None:
    # UTF-16: the bytes search cannot see `<!ENTITY`: libxml2's own limits (amplification,
    # entities it does not load) or the DTD check at the first record refuse them.
    utf16 = doc.decode().replace('<?xml version="1.0"?>', "").encode("utf-16")
    seen: list[RecordBatch] = []
    t = time.perf_counter()
    with pytest.raises(XmlSyntaxError) as info:
        feed_all(xml_records(ID), sized(utf16, 4096), seen)
    assert time.perf_counter() - t < 1
    assert all(batch.rows == [] for batch in seen)
    assert "root:" not in str(info.value)


def test_the_contents_of_a_local_file_never_show() -> None:
    for doc in (PASSWD, PASSWD.decode().encode("utf-16")):
        seen: list[RecordBatch] = []
        with pytest.raises(FeedError) as info:
            feed_all(xml_records(ID), sized(doc, 16), seen)
        assert "root:" not in repr(seen) + str(info.value)


def test_an_external_dtd_is_not_fetched() -> None:
    doc = (b'<?xml version="1.0"?>\n<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS'
           b' 0.91//EN" "http://127.0.0.1:9/rss-0.91.dtd">\n'
           b"<rss><channel><item><id>1</id></item></channel></rss>")
    t = time.perf_counter()
    batch = parse({"record": "/rss/channel/item", "fields": {"externalId": "id"}}, [doc])
    assert batch.rows == [["1"]]
    assert time.perf_counter() - t < 1


def test_external_dtd_files_are_never_read(tmp_path: Path) -> None:
    # Read, this DTD would fail the document ("Content error in the external subset");
    # lxml reads it when the parser is built with collect_ids=False, which is why it is not.
    dtd = tmp_path / "feed.dtd"
    dtd.write_bytes(b"this is not a DTD <!ENTITY leak 'LEAKED'>")
    for doctype in (f'SYSTEM "{dtd.as_uri()}"', f'PUBLIC "-//X//EN" "{dtd.as_uri()}"'):
        doc = f"<!DOCTYPE r {doctype}>\n<r><i><id>1</id></i></r>".encode()
        assert parse(ID, [doc]).rows == [["1"]]


def test_deep_nesting_is_refused() -> None:
    doc = b"<r>" + b"<a>" * 5000 + b"</a>" * 5000 + b"</r>"
    error = failure(ID, [doc])
    assert "Excessive depth" in str(error)


# -- memory


def _items(n: int, start: int = 0) -> bytes:
    return b"".join(b"<i><id>%d</id><q>%d</q><d>some description text</d></i>\n" % (k, k % 9)
                    for k in range(start, start + n))


def _tree_size(parser: XmlRecords) -> int:
    """Elements the parser's tree holds (reached from the records' parent)."""
    parent = parser._parent
    assert parent is not None
    return sum(1 for _ in parent.getroottree().getroot().iter())


def test_the_tree_holds_only_the_current_record() -> None:
    parser = xml_records({"record": "/feed/group/i",
                         "fields": {"externalId": "id", "inventoryQuantity": "q"}})
    parser.feed(b"<feed><head><title>x</title></head>\n")
    rows = 0
    for g in range(20):  # groups of records: the groups before are dropped too
        rows += len(parser.feed(b"<group><name>g</name>" + _items(1000, g * 1000)
                                + b"</group>\n").rows)
        assert _tree_size(parser) < 10
    rows += len(parser.feed(b"</feed>").rows) + len(parser.close().rows)
    assert rows == parser.records == 20_000


def _peak(n: int) -> int:
    parser = xml_records({"record": "/r/i",
                         "fields": {"externalId": "id", "inventoryQuantity": "q"}})
    chunks = sized(b"<r>" + _items(n) + b"</r>", 64 * 1024)
    tracemalloc.start()
    try:
        for chunk in chunks:
            parser.feed(chunk)
        parser.close()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_python_memory_does_not_grow_with_the_records() -> None:
    small, large = _peak(4_000), _peak(16_000)
    assert large < small * 1.5 + 256 * 1024, (small, large)

