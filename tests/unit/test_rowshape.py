"""Presets whose rows lean on each other (worker/rowshape.py), through the Mapper: Shopify's
variants grouped by Handle (product columns filled down, image-only rows skipped, an
untracked variant), sale prices (WooCommerce, Google Merchant's text feed)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.unit.recordhelp import csv_mapper
from tests.unit.test_mapping import decode
from worker.feedmapping import parse_mapping
from worker.mapping import Mapper, Reject
from worker.rowshape import IMAGE_ONLY, column_of

Row = dict[str, Any]

SHOPIFY_HEADER = [
    "Handle", "Title", "Body (HTML)", "Vendor", "Type", "Tags", "Option1 Name",
    "Option1 Value", "Variant SKU", "Variant Inventory Tracker", "Variant Inventory Qty",
    "Variant Inventory Policy", "Variant Price", "Variant Barcode", "Image Src",
    "Image Position",
]
IMG = "https://cdn.example.com/{}.jpg"


def shopify_row(handle: str, title: str = "", sku: str = "", qty: str = "",
                tracker: str = "shopify", policy: str = "deny", price: str = "",
                image: str = "", position: str = "", option: str = "") -> list[str]:
    product = [title, f"<p>{title}</p>", "Acme", "Lamp", "lit"] if title else [""] * 5
    variant = ([option and "Size", option, sku, tracker, qty, policy, price, ""]
               if sku or price else [""] * 8)
    return [handle, *product, *variant, image, position]


def image_row(handle: str, n: int) -> list[str]:
    return shopify_row(handle, image=IMG.format(f"{handle}-{n}"), position=str(n))


# A product of three variants and two more images, a single-variant product, then a
# variant without a SKU (still a reject), an image row, and a product whose first row has
# no title (nothing to fill from).
SHOPIFY = [
    shopify_row("lamp", "Desk Lamp", "L-S", "3", price="20", image=IMG.format("lamp-1"),
                position="1", option="S"),
    shopify_row("lamp", sku="L-M", qty="0", policy="continue", price="22", option="M"),
    shopify_row("lamp", sku="L-L", qty="9", tracker="", price="24", option="L"),
    image_row("lamp", 2),
    image_row("lamp", 3),
    shopify_row("shade", "Shade", "SH-1", "5", price="8"),
    shopify_row("shade", price="9", qty="1"),
    image_row("shade", 2),
    shopify_row("bulb", sku="B-1", qty="2", price="1"),
]


def rows_of(mapper: Mapper, rows: list[list[str]],
            first: int = 2) -> tuple[list[Row], list[Reject]]:
    """The batch mapped: each row as {column: value}, and the rejects."""
    batch = mapper.map(rows, list(range(first, first + len(rows))))
    return [dict(zip(mapper.columns, r, strict=True)) for r in decode(batch)], batch.rejects


def shopify() -> Mapper:
    return csv_mapper({"preset": "shopify"}, SHOPIFY_HEADER)


def test_image_only_rows_are_skipped_and_counted_not_rejected() -> None:
    m = shopify()
    got, rejects = rows_of(m, SHOPIFY)
    assert [r["external_id"] for r in got] == ["L-S", "L-M", "L-L", "SH-1", "B-1"]
    # a variant row without a SKU is no image row: still rejected
    assert [(j.position, j.reason) for j in rejects] == [(8, "externalId is blank")]
    assert m.skipped == {IMAGE_ONLY: 3}
    assert m.records == len(SHOPIFY) - 3  # skipped rows are not records of the mapping
    assert m.matched["images"] == 1  # the skipped rows' images are not counted


def test_a_product_row_with_an_image_and_no_sku_is_not_skipped() -> None:
    """Only rows with nothing but an image are skipped; a product's first row without a
    SKU (but with its title) is a reject as before."""
    m = shopify()
    row = shopify_row("lamp", "Desk Lamp", image=IMG.format("lamp"), position="1")
    got, rejects = rows_of(m, [row])
    assert got == []
    assert [j.reason for j in rejects] == ["externalId is blank"]
    assert m.skipped == {}


def test_the_products_columns_fill_down_within_its_handle() -> None:
    got, _ = rows_of(shopify(), SHOPIFY)
    by_sku = {r["external_id"]: r for r in got}
    for sku in ("L-S", "L-M", "L-L"):
        assert by_sku[sku]["name"] == "Desk Lamp"  # the product's Title (no option values)
        assert orjson.loads(by_sku[sku]["extra"]) == {
            "handle": "lamp", "description": "<p>Desk Lamp</p>", "vendorName": "Acme",
            "productType": "Lamp", "tags": "lit"}
    assert by_sku["SH-1"]["name"] == "Shade"
    # a product whose first row has no Title takes nothing from the product before
    assert by_sku["B-1"]["name"] is None
    assert orjson.loads(by_sku["B-1"]["extra"]) == {"handle": "bulb"}
    # only the product's first row has its image (Image Src is not filled down)
    assert [by_sku[s]["images"] for s in ("L-S", "L-M")] == [f'["{IMG.format("lamp-1")}"]',
                                                             None]


def test_a_later_rows_own_value_is_kept_and_filled_down_from() -> None:
    rows = [shopify_row("mug", "Mug", "M-1", "1", price="5"),
            shopify_row("mug", "Mug (blue)", "M-2", "1", price="5"),
            shopify_row("mug", sku="M-3", qty="1", price="5")]
    got, _ = rows_of(shopify(), rows)
    assert [r["name"] for r in got] == ["Mug", "Mug (blue)", "Mug (blue)"]


def test_rows_with_a_blank_handle_take_nothing_from_each_other() -> None:
    rows = [shopify_row("", "Mug", "M-1", "1", price="5"),
            shopify_row("", sku="M-2", qty="1", price="5")]
    got, _ = rows_of(shopify(), rows)
    assert [r["name"] for r in got] == ["Mug", None]


@pytest.mark.parametrize("cut", range(len(SHOPIFY) + 1))
def test_filling_down_carries_across_batches(cut: int) -> None:
    """Batches come in file order: a product split between two batches fills down as if
    it were in one; the skipped count adds up."""
    whole, whole_rejects = rows_of(shopify(), SHOPIFY)
    m = shopify()
    a, ra = rows_of(m, SHOPIFY[:cut])
    b, rb = rows_of(m, SHOPIFY[cut:], first=2 + cut)
    assert a + b == whole
    assert ra + rb == whole_rejects
    assert m.skipped == {IMAGE_ONLY: 3}


def test_row_by_row_batches_fill_down_like_one() -> None:
    whole, _ = rows_of(shopify(), SHOPIFY)
    m = shopify()
    one_by_one = [r for i, row in enumerate(SHOPIFY) for r in rows_of(m, [row], 2 + i)[0]]
    assert one_by_one == whole
    # every variant row of a titled product (counted before checks: the reject too)
    assert m.matched["name"] == 5


def test_a_blank_inventory_tracker_is_an_untracked_variant() -> None:
    got, _ = rows_of(shopify(), SHOPIFY[:3])
    policy = [(r["inventory_policy"], r["inventory_quantity"]) for r in got]
    # deny: tracked, stops at 0; continue: tracked, sells past 0; no tracker: not tracked,
    # the quantity means nothing (as Google Merchant's in stock)
    assert policy == [("track", "3"), ("continue", "0"), ("ignore", None)]


def test_untracked_variants_keep_the_feeds_own_policy_map() -> None:
    m = csv_mapper({"preset": "shopify",
                    "values": {"inventoryPolicy": {"deny": "track", "continue": "ignore"}}},
                   SHOPIFY_HEADER)
    got, _ = rows_of(m, SHOPIFY[:3])
    assert [r["inventory_policy"] for r in got] == ["track", "ignore", "ignore"]


def test_without_a_tracker_column_the_policy_is_the_files() -> None:
    header = [h for h in SHOPIFY_HEADER if h != "Variant Inventory Tracker"]
    at = SHOPIFY_HEADER.index("Variant Inventory Tracker")
    rows = [r[:at] + r[at + 1:] for r in SHOPIFY[:3]]
    got, _ = rows_of(csv_mapper({"preset": "shopify"}, header), rows)
    assert [r["inventory_policy"] for r in got] == ["track", "continue", "track"]


def test_a_carried_title_with_a_control_character_rejects_the_rows_it_fills() -> None:
    m = shopify()
    rows = [shopify_row("mug", "Mug\x07", "M-1", "1", price="5"),
            shopify_row("mug", sku="M-2", qty="1", price="5")]
    _, first = rows_of(m, rows[:1])
    _, second = rows_of(m, rows[1:], first=3)
    reason = "name: contains control character U+0007"
    assert [(j.position, j.reason) for j in first + second] == [(2, reason), (3, reason)]


def test_a_feeds_own_name_column_is_not_filled_down() -> None:
    header = [*SHOPIFY_HEADER, "Variant Title"]
    rows = [[*SHOPIFY[0], "Small"], [*SHOPIFY[1], ""]]
    m = csv_mapper({"preset": "shopify", "fields": {"name": "Variant Title"}}, header)
    got, _ = rows_of(m, rows)
    assert [r["name"] for r in got] == ["Small", None]


# -- sale prices

WOO_HEADER = ["ID", "Type", "SKU", "Name", "Stock", "Sale price", "Regular price", "Parent"]


@pytest.mark.parametrize(("sale", "regular", "retail", "compare"), [
    ("39.90", "45", "39.90", "45"),   # on sale: the regular price is the compare-at price
    ("", "45", "45", None),           # not on sale: no compare-at price
    ("  ", "45", "45", None),
    ("39.90", "", "39.90", None),     # a sale price alone
    ("", "", None, None),             # a variable product's own row has no prices
])
def test_woocommerce_sale_price(sale: str, regular: str, retail: str | None,
                                compare: str | None) -> None:
    m = csv_mapper({"preset": "woocommerce"}, WOO_HEADER)
    [got], _ = rows_of(m, [["13", "variation", "W-1", "Hoodie", "3", sale, regular, "id:12"]])
    assert (got["retail_price"], got["compare_at_price"]) == (retail, compare)


def test_sale_prices_within_a_batch_and_what_is_counted() -> None:
    m = csv_mapper({"preset": "woocommerce"}, WOO_HEADER)
    rows = [["13", "variation", "W-1", "A", "3", "", "45", "id:12"],
            ["14", "variation", "W-2", "B", "3", "40", "45", "id:12"],
            ["15", "variation", "W-3", "C", "3", "", "1,045.50", "id:12"]]
    got, _ = rows_of(m, rows)
    assert [(r["retail_price"], r["compare_at_price"]) for r in got] == [
        ("45", None), ("40", "45"), ("1045.50", None)]
    assert (m.matched["retailPrice"], m.matched["compareAtPrice"]) == (3, 1)


def test_a_bad_sale_price_rejects_its_row_as_the_retail_price() -> None:
    m = csv_mapper({"preset": "woocommerce"}, WOO_HEADER)
    got, rejects = rows_of(m, [["13", "variation", "W-1", "A", "3", "cheap", "45", ""]])
    assert got == []
    assert [j.reason for j in rejects] == ["retailPrice: 'cheap' is not a plain number"]


def test_a_feeds_own_compare_at_price_column_is_left_alone() -> None:
    header = [*WOO_HEADER, "MSRP"]
    m = csv_mapper({"preset": "woocommerce", "fields": {"compareAtPrice": "MSRP"}}, header)
    [got], _ = rows_of(m, [["13", "variation", "W-1", "A", "3", "", "45", "", "50"]])
    assert (got["retail_price"], got["compare_at_price"]) == ("45", "50")


def test_a_woocommerce_export_without_sale_prices() -> None:
    header = [h for h in WOO_HEADER if h != "Sale price"]
    m = csv_mapper({"preset": "woocommerce"}, header)
    [got], _ = rows_of(m, [["13", "variation", "W-1", "A", "3", "45", ""]])
    # no sale column, no sales: the regular price is no compare-at price
    assert (got["retail_price"], got["compare_at_price"]) == ("45", None)
    assert m.matched["compareAtPrice"] == 0  # so not written


# -- Google Merchant's text feed

GOOGLE_HEADER = ["id", "title", "description", "link", "price", "sale_price", "availability",
                 "gtin", "mpn", "brand", "item_group_id", "image_link"]


def google(header: list[str]) -> Mapper:
    return csv_mapper({"preset": "google-merchant"}, header)


@pytest.mark.parametrize(("availability", "policy", "quantity"), [
    ("in_stock", "ignore", None), ("in stock", "ignore", None),
    ("out_of_stock", "track", "0"), ("Out of stock", "track", "0"),
    ("preorder", "continue", "0"), ("backorder", "continue", "0"),
])
def test_google_text_feed_availability(availability: str, policy: str,
                                       quantity: str | None) -> None:
    row = ["G1", "Mug", "", "", "5.00 USD", "", availability, "", "", "", "", ""]
    [got], _ = rows_of(google(GOOGLE_HEADER), [row])
    assert (got["inventory_policy"], got["inventory_quantity"]) == (policy, quantity)


def test_google_text_feed_prices_and_attributes() -> None:
    rows = [["G1", "Mug", "Stoneware", "https://shop.example/mug", "12.99 USD", "9.99 USD",
             "in_stock", "4006381333931", "MUG-1", "Kiln", "MUGS", "https://img.example/1.jpg"],
            ["G2", "Cup", "", "", "7.00 EUR", "", "out_of_stock", "", "", "", "MUGS", ""]]
    got, rejects = rows_of(google(GOOGLE_HEADER), rows)
    assert rejects == []
    mug, cup = got
    assert (mug["retail_price"], mug["compare_at_price"], mug["currency"]) == (
        "9.99", "12.99", "USD")
    assert (cup["retail_price"], cup["compare_at_price"], cup["currency"]) == (
        "7.00", None, "EUR")
    assert (mug["name"], mug["barcode"], mug["mpn"], mug["external_group_id"]) == (
        "Mug", "4006381333931", "MUG-1", "MUGS")
    assert orjson.loads(mug["extra"]) == {"description": "Stoneware", "vendorName": "Kiln",
                                          "externalUrl": "https://shop.example/mug"}


def test_google_template_spellings_of_the_header() -> None:
    """Google's sheet templates write `image link`, `sale price`, `item group id`."""
    header = ["ID", "Title", "Price", "Sale Price", "Availability", "Image Link",
              "Item Group ID"]
    m = google(header)
    assert {a: header[i] for a, i in m.source.items()} == {
        "externalId": "ID", "name": "Title", "retailPrice": "Price",
        "compareAtPrice": "Price", "inventoryPolicy": "Availability",
        "inventoryQuantity": "Availability", "images": "Image Link",
        "externalGroupId": "Item Group ID"}
    [got], _ = rows_of(m, [["G1", "Mug", "12.99 USD", "9.99 USD", "in stock",
                            "https://img.example/1.jpg", "MUGS"]])
    assert (got["retail_price"], got["compare_at_price"]) == ("9.99", "12.99")


def test_the_google_merchant_preset_reads_xml_and_csv() -> None:
    xml = parse_mapping({"preset": "google-merchant"}, "xml")
    csv = parse_mapping({"preset": "google-merchant"}, "ftp_csv")
    assert (xml.fields["externalId"], csv.fields["externalId"]) == ("g:id", "id")
    assert xml.values == csv.values  # one meaning of availability
    assert (xml.record, csv.record) == ("/rss/channel/item", "")


@pytest.mark.parametrize(("header", "name", "found"), [
    (["a", "Image Link"], "image_link", 1),
    (["image_link", "image link"], "image link", 1),  # the exact name first
    (["a", "IMAGE_LINK "], "image link", 1),
    (["a", "b"], "image_link", None),
])
def test_column_of(header: list[str], name: str, found: int | None) -> None:
    assert column_of(header, name) == found
