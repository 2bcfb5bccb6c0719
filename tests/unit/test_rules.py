"""Value rules (worker/rules.py): parsing mapping.rules, and each rule on columns, in the
pull mapper and on pushed items."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from tests.unit.csvhelp import parse_text
from tests.unit.recordhelp import csv_mapper
from worker.errors import FeedError
from worker.feedmapping import parse_mapping, push_rules
from worker.model import COLUMN_BIT, COLUMNS, Rules
from worker.pushmap import apply_rules, to_item
from worker.ruleparse import parse_rules
from worker.rules import Applier, gtin_problem
from worker.settings import Settings


def applier(rules: dict[str, Any], sources: str = "csv") -> Applier:
    return Applier(parse_rules(rules, sources))


def prices(rules: dict[str, Any], col: list[str], attr: str = "retailPrice"
           ) -> tuple[list[str], dict[int, str], dict[str, int]]:
    a = applier({"price": rules})
    bad: dict[int, str] = {}
    return list(a.price(attr, col, bad)), bad, a.counts


# -- parsing ---------------------------------------------------------------------------------

def test_no_rules_is_falsy_and_the_mapping_keeps_none() -> None:
    assert not parse_rules(None, "csv")
    assert not parse_mapping({"fields": {"externalId": "id"}}, "ftp_csv").rules


def test_rules_are_parsed_into_typed_rules() -> None:
    rules = parse_rules({
        "price": {"markupPercent": 20, "markupAmount": "1.50", "rounding": ".99",
                  "min": 5, "max": 999.5, "attributes": ["retailPrice", "compareAtPrice"]},
        "quantity": {"sum": {"berlin": "Stock B", "paris": 4}, "locations": True,
                     "below": 2, "buffer": 1, "cap": 50},
        "barcode": {"gtin": "warn"}}, "csv")
    assert rules.price is not None
    assert rules.price.markup_percent == Decimal(20)
    assert rules.price.markup_amount == Decimal("1.50")
    assert rules.price.maximum == Decimal("999.5")
    assert rules.price.attributes == ("retailPrice", "compareAtPrice")
    assert rules.quantity is not None
    assert rules.quantity.sources == (("berlin", "Stock B"), ("paris", 4))
    assert (rules.quantity.below, rules.quantity.buffer, rules.quantity.cap) == (2, 1, 50)
    assert rules.barcode is not None
    assert rules.barcode.gtin == "warn"


@pytest.mark.parametrize(("raw", "message"), [
    ([], "mapping.rules must be an object"),
    ({"prices": {}}, "unknown keys ['prices']"),
    ({"price": {"rounding": ".98"}}, "mapping.rules.price.rounding '.98'"),
    ({"price": {"markup": 5}}, "mapping.rules.price has unknown keys ['markup']"),
    ({"price": {"markupPercent": "ten"}}, "mapping.rules.price.markupPercent 'ten'"),
    ({"price": {"markupPercent": -100}}, "must be above -100"),
    ({"price": {"min": -1}}, "mapping.rules.price.min -1 must be a finite number of at least"),
    ({"price": {"min": 10, "max": 5}}, "mapping.rules.price.min (10) is above"),
    ({"price": {"attributes": ["grams"]}}, "mapping.rules.price.attributes must list"),
    ({"price": {"max": True}}, "mapping.rules.price.max must be a number"),
    ({"quantity": {"below": -1}}, "mapping.rules.quantity.below must be a whole number"),
    ({"quantity": {"cap": 1.5}}, "mapping.rules.quantity.cap must be a whole number"),
    ({"quantity": {"locations": True}}, "locations needs mapping.rules.quantity.sum"),
    ({"quantity": {"sum": []}}, "must name at least one source"),
    ({"quantity": {"sum": "Stock"}}, "must be a list of sources"),
    ({"quantity": {"sum": ["A", "A"]}}, "names a location or a source twice"),
    ({"quantity": {"sum": [None]}}, "None is not a column name"),
    ({"barcode": {"gtin": "maybe"}}, "mapping.rules.barcode.gtin 'maybe'"),
    ({"barcode": {"eNotation": "keep"}}, "unknown keys ['eNotation']"),
])
def test_bad_rules_fail_with_the_key_at_fault(raw: Any, message: str) -> None:
    with pytest.raises(FeedError) as info:
        parse_mapping({"fields": {"externalId": "id"}, "rules": raw}, "ftp_csv")
    assert message in str(info.value)


@pytest.mark.parametrize("resource_type", ["xml", "json"])
def test_an_xml_or_json_sum_reads_its_paths_as_fields(resource_type: str) -> None:
    """The parser reads each path as a field of its own, named as details.matched names
    it; the sum finds them there."""
    record = {"record": "/items/item"} if resource_type == "xml" else {}
    north = "stock/n" if resource_type == "xml" else "stock.n"
    m = parse_mapping({"fields": {"externalId": "id"}, **record,
                       "rules": {"quantity": {"sum": {"north": north, "south": "s"}}}},
                      resource_type)
    assert m.fields["inventoryQuantity (north)"] == north
    assert m.fields["inventoryQuantity (south)"] == "s"
    assert m.rules.quantity is not None
    assert m.rules.quantity.sources == (("north", "inventoryQuantity (north)"),
                                        ("south", "inventoryQuantity (south)"))
    with pytest.raises(FeedError, match="3 is not a path"):
        parse_mapping({"fields": {"externalId": "id"}, **record,
                       "rules": {"quantity": {"sum": [3]}}}, resource_type)
    bad = "stock[" if resource_type == "xml" else "stock..n"
    with pytest.raises(FeedError, match=r"mapping.rules.quantity.sum \(w\)"):
        parse_mapping({"fields": {"externalId": "id"}, **record,
                       "rules": {"quantity": {"sum": {"w": bad}}}}, resource_type)


def test_a_sum_is_refused_beside_a_quantity_field_or_by_name_without_a_header() -> None:
    with pytest.raises(FeedError, match="both give the quantity"):
        parse_mapping({"fields": {"externalId": "id", "inventoryQuantity": "qty"},
                       "rules": {"quantity": {"sum": ["a", "b"]}}}, "ftp_csv")
    with pytest.raises(FeedError, match="no header row: use 0-based indexes"):
        parse_mapping({"fields": {"externalId": 0}, "rules": {"quantity": {"sum": ["a"]}}},
                      "ftp_csv", csv_has_header=False)
    headless = parse_mapping({"fields": {"externalId": 0},
                              "rules": {"quantity": {"sum": ["3", 4]}}}, "ftp_csv", False)
    assert headless.rules.quantity is not None
    assert headless.rules.quantity.sources == (("3", 3), ("4", 4))


def test_push_rules_read_only_the_rules_of_the_stored_mapping() -> None:
    stored = orjson.dumps({"fields": {"nonsense": 1},
                           "rules": {"quantity": {"sum": ["stock.a", "b"]}}}).decode()
    rules = push_rules(stored, "webhook", True)
    assert rules.quantity is not None
    assert rules.quantity.sources == (("stock.a", "stock.a"), ("b", "b"))
    assert push_rules(None, "ftp_csv", True) == Rules()
    with pytest.raises(FeedError, match="rounding"):
        push_rules('{"rules": {"price": {"rounding": 1}}}', "ftp_csv", True)


# -- prices ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("rounding", "given", "expected"), [
    (".99", "10.00", "10.99"),   # up to the next .99, never down to 9.99
    (".99", "10.99", "10.99"),
    (".99", "10.995", "11.99"),
    (".99", "0.5", "0.99"),
    (".95", "12.96", "13.95"),
    (".95", "12.95", "12.95"),
    ("0.05", "12.32", "12.30"),
    ("0.05", "12.33", "12.35"),
    ("0.05", "12.325", "12.35"),  # half up
    ("0.05", "12.30", "12.30"),
])
def test_rounding(rounding: str, given: str, expected: str) -> None:
    got, bad, _ = prices({"rounding": rounding}, [given])
    assert got == [expected]
    assert not bad


def test_a_zero_price_is_not_rounded_up() -> None:
    got, _, counts = prices({"rounding": ".99"}, ["0", "0.00", "1"])
    assert [Decimal(g) for g in got] == [0, 0, Decimal("1.99")]
    assert counts == {"price.rounding": 1}


def test_markup_comes_before_rounding() -> None:
    got, _, counts = prices({"markupPercent": 20, "rounding": ".99"}, ["10.00", "10.99"])
    # 12.00 -> 12.99 (rounding first would give 10.99 x 1.2 = 13.19 -> 13.99)
    assert got == ["12.99", "13.99"]
    assert counts == {"price.markup": 2, "price.rounding": 2}


def test_markup_without_rounding_is_exact_to_the_cent() -> None:
    got, _, _ = prices({"markupPercent": 15}, ["9.99", "0.10", "100"])
    assert got == ["11.49", "0.12", "115.00"]  # 11.4885, 0.115 (half up)
    got, _, _ = prices({"markupPercent": "17.5", "markupAmount": 2}, ["10.00"])
    assert got == ["13.75"]


def test_a_negative_amount_never_makes_a_price_negative() -> None:
    got, _, _ = prices({"markupAmount": -5}, ["3.00", "12.00"])
    assert got == ["0.00", "7.00"]


def test_min_and_max_clamp_after_rounding() -> None:
    got, _, counts = prices({"rounding": ".99", "min": 5, "max": 100},
                            ["1.00", "50.00", "100.00", "250"])
    assert got == ["5", "50.99", "100", "100"]
    assert counts == {"price.rounding": 4, "price.min": 1, "price.max": 2}


def test_blanks_stay_blank_and_unchanged_columns_are_returned_as_they_are() -> None:
    got, _, counts = prices({"markupPercent": 10}, ["", "10", ""])
    assert got == ["", "11.00", ""]
    col = ["10", "20"]
    a = applier({"price": {"min": 1}})
    assert a.price("retailPrice", col, {}) is col
    assert a.counts == {}
    assert a.price("costPrice", ["1"], {}) == ["1"]  # not an attribute the rule names
    assert counts == {"price.markup": 1}


def test_the_rule_applies_to_the_attributes_it_names() -> None:
    a = applier({"price": {"markupPercent": 100, "attributes": ["costPrice"]}})
    assert a.price("costPrice", ["2"], {}) == ["4.00"]
    assert a.price("retailPrice", ["2"], {}) == ["2"]


def test_a_price_grown_past_the_digit_limit_is_rejected() -> None:
    got, bad, _ = prices({"markupPercent": 900}, ["1", "500000000000000"])
    assert got == ["10.00", ""]
    assert bad == {1: "retailPrice: '5000000000000000.00' has more than 15 digits before "
                      "the decimal point"}
    got, bad, _ = prices({"markupPercent": 900, "rounding": ".99"},
                         ["1.00", "99999999999999.00", "100000000000000.00"])
    assert got == ["10.99", "999999999999990.99", ""]
    assert bad == {2: "retailPrice: '1000000000000000.99' has more than 15 digits before "
                      "the decimal point"}


# -- quantities ------------------------------------------------------------------------------

def quantities(rules: dict[str, Any], *cols: list[str], bad: dict[int, str] | None = None
               ) -> tuple[list[str], list[dict[str, int]] | None, dict[str, int]]:
    a = applier({"quantity": rules})
    names = [f"w{i}" for i in range(len(cols))]
    total, places = a.quantity_sum(cols, names, {} if bad is None else bad)
    return list(total), places, a.counts


def test_sum_of_columns() -> None:
    total, places, counts = quantities({"sum": ["a", "b", "c"]}, ["1", "10"], ["2", "0"],
                                       ["3", "-1"])
    assert total == ["6", "9"]
    assert places is None
    assert counts == {"quantity.sum": 2}


def test_sum_with_a_blank_column() -> None:
    total, places, _ = quantities({"sum": ["a", "b", "c"], "locations": True},
                                  ["1", "", ""], ["", "", "5"], ["3", "", ""])
    assert total == ["4", "", "5"]  # a blank counts as 0; all blank stays blank
    assert places == [{"w0": 1, "w2": 3}, {}, {"w1": 5}]


@pytest.mark.parametrize("blank", ["", "0"])
def test_a_sum_beyond_a_quantity_is_rejected(blank: str) -> None:
    bad: dict[int, str] = {}
    total, _, _ = quantities({"sum": ["a", "b"]}, ["2147483647", "1", "-2147483648"],
                             ["1", blank, "-1"], bad=bad)
    assert total == ["", "1", ""]
    assert bad == {0: "inventoryQuantity: the sum 2147483648 is out of range",
                   2: "inventoryQuantity: the sum -2147483649 is out of range"}


def test_locations_keep_each_source() -> None:
    _, places, _ = quantities({"sum": ["a", "b"], "locations": True}, ["1", "2"], ["3", "0"])
    assert places == [{"w0": 1, "w1": 3}, {"w0": 2, "w1": 0}]


def test_threshold_buffer_and_cap() -> None:
    a = applier({"quantity": {"below": 3}})
    assert a.quantity(["2", "3", "-1", "0", ""]) == ["0", "3", "0", "0", ""]
    a = applier({"quantity": {"buffer": 2}})
    assert a.quantity(["1", "2", "5", "-4"]) == ["0", "0", "3", "0"]  # never below 0
    a = applier({"quantity": {"cap": 10}})
    col = ["5", "10"]
    assert a.quantity(col) is col
    assert a.quantity(["50", "9"]) == ["10", "9"]
    assert a.counts == {"quantity.cap": 1}


def test_threshold_then_buffer_then_cap() -> None:
    a = applier({"quantity": {"below": 3, "buffer": 2, "cap": 1}})
    assert a.quantity(["2", "4", "100"]) == ["0", "1", "1"]
    assert a.counts == {"quantity.below": 1, "quantity.buffer": 2, "quantity.cap": 2}


def test_the_sum_then_goes_through_the_threshold() -> None:
    total, _, counts = quantities({"sum": ["a", "b"], "below": 5}, ["2", "4"], ["2", "4"])
    assert total == ["0", "8"]
    assert counts == {"quantity.sum": 2, "quantity.below": 1}


# -- barcodes --------------------------------------------------------------------------------

VALID = ["96385074", "036000291452", "4006381333931", "10012345678902"]  # GTIN-8/12/13/14
WRONG = ["96385075", "036000291453", "4006381333932", "10012345678903"]


@pytest.mark.parametrize("code", VALID)
def test_valid_gtins_pass(code: str) -> None:
    assert gtin_problem(code) is None
    a = applier({"barcode": {}})
    bad: dict[int, str] = {}
    assert a.barcode([code, ""], bad) == [code, ""]
    assert bad == {}
    assert a.counts == {}


@pytest.mark.parametrize(("code", "check"), list(zip(WRONG, "4212", strict=True)))
def test_a_wrong_check_digit_rejects(code: str, check: str) -> None:
    a = applier({"barcode": {"gtin": "reject"}})
    bad: dict[int, str] = {}
    a.barcode([VALID[0], code], bad)
    assert bad == {1: f"barcode: {code!r} has a wrong check digit "
                      f"(GTIN-{len(code)}: {check} expected)"}
    assert a.counts == {"barcode.gtin": 1}


@pytest.mark.parametrize("code", ["1234567", "12345678901", "ABC12345", "123456789012345",
                                  "\uff10" * 8])  # fullwidth digits are no GTIN
def test_what_is_no_gtin_at_all(code: str) -> None:
    a = applier({"barcode": {}})
    bad: dict[int, str] = {}
    a.barcode([code], bad)
    assert "is not a GTIN-8, -12, -13 or -14" in bad[0]


def test_warn_keeps_the_value_and_counts_it() -> None:
    a = applier({"barcode": {"gtin": "warn"}})
    bad: dict[int, str] = {}
    assert a.barcode([WRONG[2], VALID[2], "x"], bad) == [WRONG[2], VALID[2], "x"]
    assert bad == {}
    assert a.counts == {"barcode.gtin_warned": 2}


def test_off_checks_only_e_notation() -> None:
    a = applier({"barcode": {"gtin": "off"}})
    bad: dict[int, str] = {}
    a.barcode([WRONG[0], "3.65275E+11"], bad)
    assert list(bad) == [1]


def test_e_notation_in_csv_text_is_refused_with_a_reason() -> None:
    text = ("external_id,barcode,qty\n"
            "A,3.65275E+11,1\n"
            'B,"4,00638E+12",2\n'
            "C,4006381333931,3\n"
            "D,1e5,4\n")
    parsed = parse_text([text])
    header, rows = parsed.rows[0], parsed.rows[1:]
    m = csv_mapper({"rules": {"barcode": {"gtin": "warn"}}}, header, positions=True)
    out = m.map(rows, parsed.lines[1:])
    assert [(r.position, r.reason) for r in out.rejects] == [
        (2, "barcode: '3.65275E+11' is in E-notation: a spreadsheet rounded the number and "
            "its digits are lost"),
        (3, "barcode: '4,00638E+12' is in E-notation: a spreadsheet rounded the number and "
            "its digits are lost"),
        (5, "barcode: '1e5' is in E-notation: a spreadsheet rounded the number and its "
            "digits are lost")]
    assert out.text == "4\tC\t4006381333931\t3\n"
    assert m.applier is not None
    assert m.applier.counts == {"barcode.e_notation": 3}


# -- in the pull mapper ----------------------------------------------------------------------

RULES = {"price": {"markupPercent": 20, "rounding": ".99"},
         "quantity": {"sum": {"north": "Stock N", "south": "Stock S", "east": "Stock E"},
                      "locations": True, "buffer": 1},
         "barcode": {"gtin": "reject"}}
HEADER = ["id", "ean", "price", "Stock N", "Stock S", "Stock E", "description"]


def test_the_mapper_applies_every_rule() -> None:
    m = csv_mapper({"fields": {"externalId": "id", "barcode": "ean", "retailPrice": "price"},
                    "rules": RULES}, HEADER, positions=True)
    assert m.columns == ["external_id", "barcode", "retail_price", "inventory_quantity",
                         "extra", "currency"]
    rows = [["A1", "4006381333931", "10.00", "1", "2", "3", "nice"],
            ["A2", "96385074", "45.5", "", "", "", ""],
            ["A3", "4006381333932", "1", "1", "1", "1", ""],
            ["A4", "", "", "4", "", "x", ""]]
    out = m.map(rows, [2, 3, 4, 5])
    assert out.text.splitlines() == [
        '2\tA1\t4006381333931\t12.99\t5\t{"description":"nice","locations":'
        '{"north":1,"south":2,"east":3}}\t',
        "3\tA2\t96385074\t54.99\t\t{}\t"]
    assert [(r.position, r.reason) for r in out.rejects] == [
        (4, "barcode: '4006381333932' has a wrong check digit (GTIN-13: 1 expected)"),
        (5, "inventoryQuantity (east): 'x' is not a whole number")]
    assert m.applier is not None
    assert m.applier.counts == {"price.markup": 3, "price.rounding": 3, "quantity.sum": 3,
                                "quantity.buffer": 3, "barcode.gtin": 1}


def test_the_sum_replaces_an_auto_mapped_quantity_and_reads_value_maps() -> None:
    m = csv_mapper({"values": {"inventoryQuantity": {"many": 50}},
                    "rules": {"quantity": {"sum": ["a", "b"]}}},
                   ["external_id", "qty", "a", "b"], positions=True)
    assert m.columns == ["external_id", "inventory_quantity"]
    out = m.map([["X", "999", "many", "2"]], [2])
    assert out.text == "2\tX\t52\n"


def test_a_missing_sum_column_fails_naming_it() -> None:
    with pytest.raises(FeedError, match="'Stock Z'"):
        csv_mapper({"rules": {"quantity": {"sum": ["Stock Z"]}}}, ["external_id", "qty"])


def test_prices_with_symbols_get_the_rule_too() -> None:
    m = csv_mapper({"rules": {"price": {"rounding": "0.05"}}},
                   ["external_id", "retail_price"], "comma", positions=True)
    out = m.map([["A", "45,02 €"], ["B", "1.234,50"]], [2, 3])
    assert out.text == "2\tA\t45.00\t\n3\tB\t1234.50\t\n"
    assert not out.rejects


# -- on pushed items -------------------------------------------------------------------------

SETTINGS = Settings()
Q = COLUMNS.index("inventory_quantity")
P = COLUMNS.index("retail_price")


def test_pushed_items_get_the_same_rules() -> None:
    rules = push_rules(orjson.dumps({"rules": RULES | {"quantity": {
        "sum": {"north": "Stock N", "south": "stock.south", "east": "Stock E"},
        "locations": True, "buffer": 1}}}).decode(), "webhook", True)
    a = Applier(rules)
    variants = [
        {"externalId": "A1", "barcode": "4006381333931", "retailPrice": "10.00",
         "Stock N": 1, "stock": {"south": "2"}, "Stock E": 3, "color": "red"},
        {"externalId": "A2", "inventoryQuantity": 7},                  # no source: its own
        {"externalId": "A3", "barcode": "4006381333932", "retailPrice": 5},
        {"externalId": "A4", "Stock N": 1.5, "Stock E": None},
    ]
    items = [to_item(1, v, None, SETTINGS) for v in variants]
    ruled, bad = apply_rules(a, items)
    assert bad == {2: "barcode: '4006381333932' has a wrong check digit (GTIN-13: 1 expected)"}
    assert ruled[0].values[Q] == "5"
    assert ruled[0].values[P] == "12.99"
    assert ruled[0].extra == {"stock": {"south": "2"}, "color": "red",
                              "locations": {"north": 1, "south": 2, "east": 3}}
    assert ruled[1].values[Q] == "6"   # the buffer on its own quantity
    assert ruled[3].values[Q] == "1"   # 1.5 rounds to 2, minus the buffer
    assert ruled[3].extra == {"locations": {"north": 2}}
    assert ruled[3].present & COLUMN_BIT["inventory_quantity"]
    # the folded items themselves are left as they were (a retried group rules them again)
    assert items[0].values[P] == "10.00"
    assert items[0].values[Q] is None
    assert "Stock N" in items[0].extra
    assert a.counts == {"quantity.sum": 2, "quantity.buffer": 3, "price.markup": 2,
                        "price.rounding": 2, "barcode.gtin": 1}


def test_sources_alone_in_extra_leave_no_extra_behind() -> None:
    a = Applier(push_rules('{"rules": {"quantity": {"sum": ["a", "b"]}}}', "webhook", True))
    [item] = [to_item(1, {"externalId": "X", "a": 2, "b": "3"}, None, SETTINGS)]
    assert item.present & COLUMN_BIT["extra"]
    [ruled], bad = apply_rules(a, [item])
    assert not bad
    assert ruled.values[Q] == "5"
    assert ruled.extra == {}
    assert not ruled.present & COLUMN_BIT["extra"]


@pytest.mark.parametrize("rule", [
    {"markupPercent": 20, "rounding": ".99"},
    {"markupPercent": "17.5", "markupAmount": "0.30"},
    {"markupPercent": -15, "rounding": ".95", "min": "2.50"},
    {"markupAmount": 1, "rounding": "0.05", "max": 500},
    {"rounding": ".99"},
    {"rounding": "0.05", "min": 3, "max": "7.25"},
    {"markupPercent": "0.1"},
])
def test_whole_cents_and_exact_decimals_agree(rule: dict[str, Any]) -> None:
    """Prices of two decimals take the integer way (_cent_prices); the same values with a
    third decimal digit (0) take the decimal way: both give the same amounts and counts."""
    import random

    rng = random.Random(7)
    col = [f"{c // 100}.{c % 100:02d}" for c in (rng.randrange(1, 100_000) for _ in range(3000))]
    col += ["0.99", "1.00", "12.95", "0.01", "9.99", "7.25", "2.50"]
    fast, _, fast_counts = prices(rule, col)
    slow, _, slow_counts = prices(rule, [v + "0" for v in col])
    assert applier({"price": rule})._in_cents
    assert [Decimal(v) for v in fast] == [Decimal(v) for v in slow]
    assert fast_counts == slow_counts


def test_a_sum_replaces_a_presets_quantity_column() -> None:
    mapping = parse_mapping({"preset": "woocommerce",
                             "rules": {"quantity": {"sum": ["Stock A", "Stock B"]}}}, "ftp_csv")
    assert "inventoryQuantity" not in mapping.fields
    assert "inventoryQuantity" not in mapping.optional
    m = csv_mapper({"preset": "woocommerce",
                    "rules": {"quantity": {"sum": ["Stock A", "Stock B"]}}},
                   ["SKU", "Stock", "Stock A", "Stock B"], positions=True)
    assert m.map([["X", "100", "1", "2"]], [2]).text == "2\tX\tX\t3\n"
