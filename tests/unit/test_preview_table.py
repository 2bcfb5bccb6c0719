"""The preview's text tables: cells cut to a width, shares that never round to a lie,
rejected rows with their reason in full."""

from __future__ import annotations

from worker.parsers import RecordBatch
from worker.pipeline.preview import Coverage, Preview, Row, _first
from worker.preview import cell, coverage_table, percent, render, rows_table


def test_a_cell_is_one_line_cut_to_its_width() -> None:
    assert cell("short", 10) == "short"
    assert cell("exactly 10", 10) == "exactly 10"
    assert cell("one more char", 10) == "one mor..."
    assert cell("two\nlines\tand  spaces", 40) == "two lines and spaces"
    assert cell("", 5) == ""


def test_a_share_is_100_only_when_all_and_0_only_when_none() -> None:
    assert percent(3, 3) == "100%"
    assert percent(199, 200) == "99%"
    assert percent(1, 300) == "1%"
    assert percent(0, 300) == "0%"
    assert percent(1, 3) == "33%"
    assert percent(0, 0) == "-"


def test_rows_line_up_and_a_reject_gives_its_reason_in_full() -> None:
    reason = "inventoryQuantity: 'a very long text that is not a quantity' is not a whole number"
    rows = [Row(2, {"externalId": "A1", "name": "A name longer than the cell width"}),
            Row(3, reject=reason, raw="A2,a very long text"),
            Row(10, {"externalId": "A3"})]
    lines = rows_table(rows, ["externalId", "name"], width=12)
    assert lines == [
        "at  externalId  name",
        "--  ----------  ------------",
        " 2  A1          A name lo...",
        f" 3  rejected: {reason}  (A2,a very long text)",
        "10  A3",
    ]


def test_coverage_lists_the_absent_attributes_on_one_line() -> None:
    p = Preview(1, "http://host/f.xml", "xml", columns=["externalId", "currency"], coverage=[
        Coverage("externalId", "g:id", "preset", 4, 4, True),
        Coverage("retailPrice", "g:price", "preset", 1, 4, True),
        Coverage("grams", "grams", "template", 0, 4, False),
        Coverage("currency", "currency", "template", 0, 4, False),  # the prices' codes
    ])
    assert coverage_table(p) == [
        "attribute    source   from    with a value",
        "-----------  -------  ------  ------------",
        "externalId   g:id     preset  4/4 100%",
        "retailPrice  g:price  preset  1/4 25%",
        "in no sampled record, left as stored: grams (template)",
    ]


def test_the_last_line_gives_the_verdict() -> None:
    good = Preview(1, "file:///f.csv", "csv", delimiter=";", delimiter_sniffed=True,
                   header=["sku", "qty"], bytes_read=1234, complete=True)
    text = render(good)
    assert "delimiter    ';' (sniffed)" in text
    assert "read         1,234 bytes (the whole file); 0 record(s) shown" in text
    assert text.endswith("the mapping works on the sample")
    bad = Preview(1, "file:///f.json", "json", record_path="", problems=["a", "b"])
    text = render(bad)
    assert "record path  (the document's top-level array)" in text
    assert text.endswith("the mapping cannot work: 2 problem(s)")


def test_a_batch_is_cut_to_the_records_still_needed_in_file_order() -> None:
    batch = RecordBatch([["a"], ["b"], ["c"]], [2, 5, 6], [(3, "x", "bad"), (7, "y", "bad")])
    rows, lines, errors = _first(batch, 3)
    assert (rows, lines, errors) == ([["a"], ["b"]], [2, 5], [(3, "x", "bad")])
    assert _first(batch, 10) == ([["a"], ["b"], ["c"]], [2, 5, 6],
                                 [(3, "x", "bad"), (7, "y", "bad")])
    assert _first(batch, 0) == ([], [], [])


def test_the_preview_as_json_ready_values() -> None:
    p = Preview(1, "http://host/f.csv", "csv", header=["sku"], columns=["externalId"],
                rows=[Row(2, {"externalId": "A"}), Row(3, reject="externalId is blank", raw=",")],
                coverage=[Coverage("externalId", "sku", "fields", 1, 2, True)],
                problems=["no"])
    data = p.as_dict()
    assert data["ok"] is False
    assert data["rows"] == [{"position": 2, "values": {"externalId": "A"}, "reject": None,
                             "raw": ""},
                            {"position": 3, "values": {}, "reject": "externalId is blank",
                             "raw": ","}]
    assert data["coverage"][0] == {"attribute": "externalId", "source": "sku",
                                   "origin": "fields", "matched": 1, "sampled": 2,
                                   "written": True}
    assert (data["header"], data["problems"], data["format"]) == (["sku"], ["no"], "csv")
