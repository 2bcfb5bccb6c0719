"""Presets pulled end to end: each export format's file, in its real shape (the columns and
values its platform writes), served over loopback HTTP and mapped by `"preset"` alone."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
import pytest

from tests.integration.test_daemon import run_completed_events
from tests.support import feeds
from tests.support.feedserver import FeedServer
from worker.publish import publish_pull
from worker.settings import Settings

# Shopify's product CSV export: one row per variant grouped by Handle, the product's
# columns on its first row only; a row with only an image for each further image; a blank
# Variant Inventory Tracker where the quantity is not tracked (a gift card).
SHOPIFY_HEADER = [
    "Handle", "Title", "Body (HTML)", "Vendor", "Product Category", "Type", "Tags",
    "Published", "Option1 Name", "Option1 Value", "Option2 Name", "Option2 Value",
    "Option3 Name", "Option3 Value", "Variant SKU", "Variant Grams",
    "Variant Inventory Tracker", "Variant Inventory Qty", "Variant Inventory Policy",
    "Variant Fulfillment Service", "Variant Price", "Variant Compare At Price",
    "Variant Requires Shipping", "Variant Taxable", "Variant Barcode", "Image Src",
    "Image Position", "Image Alt Text", "Gift Card", "SEO Title", "SEO Description",
    "Variant Image", "Variant Weight Unit", "Variant Tax Code", "Cost per item", "Status",
]
CDN = "https://cdn.shopify.com/s/files/1/0001/products/"


def shopify_csv(rows: list[dict[str, str]]) -> bytes:
    """The export's text: each row's columns in the header's order, blank where it has
    none, quoted where needed (as Shopify writes them)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SHOPIFY_HEADER)
    writer.writerows([row.get(h, "") for h in SHOPIFY_HEADER] for row in rows)
    return out.getvalue().encode()


def shopify_product(handle: str, title: str, variants: list[dict[str, str]],
                    images: int = 1, **product: str) -> list[dict[str, str]]:
    """A product's rows: its first variant with the product's columns, the other
    variants, then an image-only row for each image after the first."""
    first = {"Title": title, "Body (HTML)": f"<p>{title}, oiled.</p>", "Vendor": "Woodworks",
             "Product Category": "Furniture > Tables", "Type": "Table", "Tags": "oak, dining",
             "Published": "TRUE", "Option1 Name": "Size", "Image Src": f"{CDN}{handle}-1.jpg",
             "Image Position": "1", "Gift Card": "FALSE", "Status": "active", **product}
    rows = [{"Handle": handle, "Variant Fulfillment Service": "manual",
             "Variant Requires Shipping": "TRUE", "Variant Taxable": "TRUE",
             "Variant Weight Unit": "kg", **v} for v in variants]
    rows[0].update(first)
    rows += [{"Handle": handle, "Image Src": f"{CDN}{handle}-{n}.jpg", "Image Position": str(n)}
             for n in range(2, images + 1)]
    return rows


SHOPIFY = shopify_csv([
    *shopify_product("oak-table", "Oak Table", [
        {"Option1 Value": "Small", "Variant SKU": "OAK-S", "Variant Grams": "12000",
         "Variant Inventory Tracker": "shopify", "Variant Inventory Qty": "4",
         "Variant Inventory Policy": "deny", "Variant Price": "249.00",
         "Variant Compare At Price": "299.00", "Variant Barcode": "0012345678905",
         "Cost per item": "120.00"},
        {"Option1 Value": "Medium", "Variant SKU": "OAK-M", "Variant Grams": "15000",
         "Variant Inventory Tracker": "", "Variant Inventory Qty": "0",
         "Variant Inventory Policy": "deny", "Variant Price": "299.00"},
        {"Option1 Value": "Large", "Variant SKU": "OAK-L", "Variant Grams": "18000",
         "Variant Inventory Tracker": "shopify", "Variant Inventory Qty": "0",
         "Variant Inventory Policy": "continue", "Variant Price": "349.00",
         "Variant Barcode": "0012345678912"},
    ], images=3),
    *shopify_product("gift-card", "Gift Card", [
        {"Option1 Value": "$25", "Variant SKU": "GC-25", "Variant Grams": "0",
         "Variant Inventory Qty": "0", "Variant Inventory Policy": "deny",
         "Variant Price": "25.00", "Variant Requires Shipping": "FALSE"},
        {"Option1 Value": "$50", "Variant SKU": "GC-50", "Variant Grams": "0",
         "Variant Inventory Qty": "0", "Variant Inventory Policy": "deny",
         "Variant Price": "50.00", "Variant Requires Shipping": "FALSE"},
    ], images=2, Type="Gift Card", Tags="", **{"Gift Card": "TRUE"}),
])

# WooCommerce's product CSV export (Products > Export, all columns).
WOOCOMMERCE = (
    'ID,Type,SKU,Name,Published,"Is featured?","Visibility in catalog","Short description",'
    'Description,"Date sale price starts","Date sale price ends","Tax status","Tax class",'
    '"In stock?",Stock,"Low stock amount","Backorders allowed?","Sold individually?",'
    '"Weight (kg)","Length (cm)","Width (cm)","Height (cm)","Allow customer reviews?",'
    '"Purchase note","Sale price","Regular price",Categories,Tags,"Shipping class",Images,'
    '"Download limit","Download expiry days",Parent,"Grouped products",Upsells,Cross-sells,'
    '"External URL","Button text",Position,"Attribute 1 name","Attribute 1 value(s)",'
    '"Attribute 1 visible","Attribute 1 global"\n'
    '12,variable,WOO-HOOD,Hoodie,1,0,visible,,"Warm, soft.",,,taxable,,1,,,0,0,0.5,,,,1,,,,'
    'Clothing > Hoodies,winter,,"https://example.com/hoodie.jpg, '
    'https://example.com/hoodie-2.jpg",,,,,,,,,0,Color,"Blue, Red",1,1\n'
    '13,variation,WOO-HOOD-BLUE,Hoodie - Blue,1,0,visible,,,,,taxable,parent,1,7,,0,0,,,,,0,'
    ",39.90,45,,,,,,,id:12,,,,,,1,Color,Blue,,1\n"
    '14,variation,WOO-HOOD-RED,Hoodie - Red,1,0,visible,,,,,taxable,parent,0,0,,0,0,,,,,0,'
    ",,\"1,045.50\",,,,,,,id:12,,,,,,2,Color,Red,,1\n"
)

# BigCommerce's product export (the Bulk Edit template).
BIGCOMMERCE = (
    "Item Type,Product ID,Product Name,Product Type,Product Code/SKU,Bin Picking Number,"
    "Brand Name,Option Set,Option Set Align,Product Description,Price,Cost Price,"
    "Retail Price,Sale Price,Fixed Shipping Cost,Free Shipping,Product Warranty,"
    "Product Weight,Product Width,Product Height,Product Depth,Allow Purchases?,"
    "Product Visible?,Product Availability,Track Inventory,Current Stock Level,"
    "Low Stock Level,Category,Product Image ID - 1,Product Image File - 1,"
    "Product UPC/EAN,Manufacturer Part Number\n"
    "Product,77,Espresso Cup,P,BC-CUP,,Kiln,,,<p>Stoneware.</p>,12.50,4.10,15.00,0.00,"
    "0.00,N,,0.3,8,6,8,Y,Y,,by product,31,2,Kitchen/Cups,,,0712345678911,KC-01\n"
    "Product,78,Gift Card,P,BC-GIFT,,Kiln,,,,25.00,0.00,0.00,0.00,0.00,Y,,0,0,0,0,Y,Y,,"
    "none,0,0,Gifts,,,,\n"
)

G = "http://base.google.com/ns/1.0"
# Google Merchant Center's RSS 2.0 product feed, as its specification writes it.
GOOGLE = f"""<?xml version="1.0" encoding="UTF-8"?>
<rss xmlns:g="{G}" version="2.0">
<channel>
<title>Example store</title>
<link>https://www.example.com</link>
<description>Products</description>
<item>
  <g:id>TV_123456</g:id>
  <g:title>LG 22LB4510 - 22" LED TV - 1080p (FullHD)</g:title>
  <g:description>Attractively styled and boasting stunning picture quality.</g:description>
  <g:link>https://www.example.com/electronics/tv/22LB4510.html</g:link>
  <g:image_link>https://images.example.com/TV_123456.png</g:image_link>
  <g:condition>new</g:condition>
  <g:availability>in_stock</g:availability>
  <g:price>159.00 USD</g:price>
  <g:sale_price>139.00 USD</g:sale_price>
  <g:gtin>71919219405200</g:gtin>
  <g:brand>LG</g:brand>
  <g:mpn>22LB4510/US</g:mpn>
  <g:item_group_id>TV_22</g:item_group_id>
  <g:product_type>Electronics &gt; TVs</g:product_type>
</item>
<item>
  <g:id>TV_123457</g:id>
  <title>LG 24LB4510</title>
  <g:availability>out of stock</g:availability>
  <g:price>179.00 USD</g:price>
  <g:sale_price></g:sale_price>
  <g:gtin>71919219405217</g:gtin>
  <g:item_group_id>TV_22</g:item_group_id>
</item>
<item>
  <g:id>TV_200</g:id>
  <g:title>OLED 55</g:title>
  <g:availability>preorder</g:availability>
  <g:price>1099.99 EUR</g:price>
</item>
</channel>
</rss>
""".encode()


# Google Merchant Center's text feed: tab-separated, the attributes' names as the header.
GOOGLE_TSV = "\n".join("\t".join(row) for row in [
    ["id", "title", "description", "link", "image_link", "availability", "price",
     "sale_price", "brand", "gtin", "mpn", "item_group_id", "condition",
     "google_product_category", "product_type", "shipping_weight"],
    ["TV_123456", 'LG 22LB4510 - 22" LED TV', "Attractive, and bright.",
     "https://www.example.com/tv/22LB4510.html", "https://images.example.com/TV_123456.png",
     "in_stock", "159.00 USD", "139.00 USD", "LG", "71919219405200", "22LB4510/US", "TV_22",
     "new", "404", "Electronics > TVs", "3 kg"],
    ["TV_123457", "LG 24LB4510", "", "https://www.example.com/tv/24LB4510.html", "",
     "out of stock", "179.00 USD", "", "LG", "71919219405217", "", "TV_22", "new", "404", "",
     "4 kg"],
    ["TV_200", "OLED 55", "", "", "", "preorder", "1099.99 EUR", "", "", "", "", "", "new",
     "", "", ""],
]).encode() + b"\n"

def details(run: dict[str, object]) -> dict[str, object]:
    raw = run["details"]
    assert isinstance(raw, str)
    parsed: dict[str, object] = orjson.loads(raw)
    return parsed


async def test_shopify(pool: asyncpg.Pool, settings: Settings,
                       feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(pool, feed_server.add("/products_export.csv", SHOPIFY),
                                    mapping={"preset": "shopify"})
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    # The three image-only rows are skipped and counted, not rejected.
    assert (run["rows_read"], run["inserted"], run["rejected"]) == (8, 5, 0)
    assert details(run)["skipped"] == {"image-only rows": 3}
    got = await feeds.items(pool, feed_id)
    small, medium, large = got["OAK-S"], got["OAK-M"], got["OAK-L"]
    # deny: Shopify refuses orders at 0, the quantity is tracked; continue: sells past 0;
    # no tracker: the quantity is not tracked
    assert [(v["inventory_policy"], v["inventory_quantity"]) for v in (small, medium, large)] \
        == [("track", 4), ("ignore", None), ("continue", 0)]
    assert (got["GC-25"]["inventory_policy"], got["GC-50"]["inventory_quantity"]) == (
        "ignore", None)
    assert (small["retail_price"], small["compare_at_price"], small["cost_price"]) == (
        Decimal("249.00"), Decimal("299.00"), Decimal("120.00"))
    assert large["compare_at_price"] is None
    assert (small["grams"], small["barcode"], small["vendor_sku"]) == (
        Decimal("12000"), "0012345678905", "OAK-S")
    # every variant has its product's title, description, vendor, type and tags
    assert {sku: v["name"] for sku, v in got.items()} == {
        "OAK-S": "Oak Table", "OAK-M": "Oak Table", "OAK-L": "Oak Table",
        "GC-25": "Gift Card", "GC-50": "Gift Card"}
    assert {v["external_group_id"] for v in (small, medium, large)} == {"oak-table"}
    assert orjson.loads(large["extra"]) == {
        "handle": "oak-table", "description": "<p>Oak Table, oiled.</p>",
        "vendorName": "Woodworks", "productType": "Table", "tags": "oak, dining"}
    assert orjson.loads(got["GC-50"]["extra"])["productType"] == "Gift Card"
    assert orjson.loads(small["images"]) == [f"{CDN}oak-table-1.jpg"]
    matched = details(run)["matched"]
    assert isinstance(matched, dict)
    assert (matched["inventoryPolicy"], matched["name"], matched["description"]) == (5, 5, 5)


async def test_a_large_shopify_export_fills_down_across_batches(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    """Products whose rows are split between the parser's batches (a few MiB of export,
    read 128 KiB at a time) still give each variant its product's title."""
    rows = [r for n in range(2500) for r in shopify_product(
        f"table-{n}", f"Table {n}", [
            {"Option1 Value": size, "Variant SKU": f"T{n}-{size}", "Variant Price": "10.00",
             "Variant Inventory Tracker": "shopify" if size != "L" else "",
             "Variant Inventory Qty": "2", "Variant Inventory Policy": "deny"}
            for size in ("S", "M", "L")], images=2)]
    body = shopify_csv(rows)
    assert len(body) > 8 * 128 * 1024
    feed_id = await feeds.make_feed(pool, feed_server.add("/big_export.csv", body),
                                    mapping={"preset": "shopify"})
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert (run["inserted"], run["rejected"]) == (7500, 0)
    assert details(run)["skipped"] == {"image-only rows": 2500}
    named = await pool.fetch(
        "SELECT external_id, name, inventory_policy FROM inventory_feed_variants "
        "WHERE inventory_feed_id = $1", feed_id)
    wrong = [r for r in named
             if r["name"] != f"Table {r['external_id'][1:].split('-')[0]}"
             or r["inventory_policy"] != ("ignore" if r["external_id"].endswith("-L")
                                          else "track")]
    assert wrong == []


async def test_woocommerce(pool: asyncpg.Pool, settings: Settings,
                           feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(pool, feed_server.add("/wc-product-export.csv",
                                                          WOOCOMMERCE.encode()),
                                    mapping={"preset": "woocommerce"})
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert (run["inserted"], run["rejected"]) == (3, 0)
    got = await feeds.items(pool, feed_id)
    blue, red, parent = got["WOO-HOOD-BLUE"], got["WOO-HOOD-RED"], got["WOO-HOOD"]
    assert (blue["inventory_quantity"], red["inventory_quantity"]) == (7, 0)
    assert parent["inventory_quantity"] is None  # the variable product keeps no stock
    # on sale: it sells for the sale price, the regular price is the compare-at price
    assert (blue["retail_price"], blue["compare_at_price"]) == (Decimal("39.90"),
                                                                Decimal("45"))
    # no sale price: the regular price is the price, and there is no compare-at price
    assert (red["retail_price"], red["compare_at_price"]) == (Decimal("1045.50"), None)
    assert details(run)["matched"]["compareAtPrice"] == 1  # type: ignore[index]
    assert (blue["name"], blue["vendor_sku"], blue["external_group_id"]) == (
        "Hoodie - Blue", "WOO-HOOD-BLUE", "id:12")
    assert orjson.loads(parent["images"]) == ["https://example.com/hoodie.jpg",
                                "https://example.com/hoodie-2.jpg"]


async def test_bigcommerce(pool: asyncpg.Pool, settings: Settings,
                           feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(pool, feed_server.add("/products-2026-12-05.csv",
                                                          BIGCOMMERCE.encode()),
                                    mapping={"preset": "bigcommerce"})
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    got = await feeds.items(pool, feed_id)
    cup, gift = got["BC-CUP"], got["BC-GIFT"]
    assert (cup["retail_price"], cup["compare_at_price"], cup["cost_price"]) == (
        Decimal("12.50"), Decimal("15.00"), Decimal("4.10"))
    assert (cup["inventory_quantity"], cup["inventory_policy"]) == (31, "track")
    assert gift["inventory_policy"] == "ignore"  # Track Inventory: none
    assert (cup["barcode"], cup["mpn"], cup["external_group_id"]) == (
        "0712345678911", "KC-01", "77")


def google_items(got: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The prices, currencies and availability both Google Merchant shapes give; the items
    on sale and not on sale."""
    on_sale, plain, preorder = got["TV_123456"], got["TV_123457"], got["TV_200"]
    # on sale: it sells for g:sale_price, g:price is the compare-at price
    assert (on_sale["retail_price"], on_sale["compare_at_price"], on_sale["currency"]) == (
        Decimal("139.00"), Decimal("159.00"), "USD")
    # an empty g:sale_price is no sale
    assert (plain["retail_price"], plain["compare_at_price"]) == (Decimal("179.00"), None)
    assert (preorder["retail_price"], preorder["currency"]) == (Decimal("1099.99"), "EUR")
    assert (on_sale["inventory_policy"], on_sale["inventory_quantity"]) == ("ignore", None)
    assert (plain["inventory_policy"], plain["inventory_quantity"]) == ("track", 0)
    assert (preorder["inventory_policy"], preorder["inventory_quantity"]) == ("continue", 0)
    return on_sale, plain


async def test_google_merchant(pool: asyncpg.Pool, settings: Settings,
                               feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(pool, feed_server.add("/products.xml", GOOGLE),
                                    resource_type="xml", mapping={"preset": "google-merchant"})
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert (run["inserted"], run["rejected"]) == (3, 0)
    on_sale, plain = google_items(await feeds.items(pool, feed_id))
    assert on_sale["name"] == 'LG 22LB4510 - 22" LED TV - 1080p (FullHD)'
    assert plain["name"] == "LG 24LB4510"  # <title> without the prefix, as the spec allows
    assert (on_sale["barcode"], on_sale["mpn"], on_sale["external_group_id"]) == (
        "71919219405200", "22LB4510/US", "TV_22")
    assert orjson.loads(on_sale["images"]) == ["https://images.example.com/TV_123456.png"]
    matched = details(run)["matched"]
    assert isinstance(matched, dict)
    assert (matched["externalId"], matched["compareAtPrice"], matched["mpn"]) == (3, 1, 1)


async def test_google_merchant_text_feed(pool: asyncpg.Pool, settings: Settings,
                                         feed_server: FeedServer) -> None:
    """The same preset reads Google's tab-separated text feed, with the XML's meanings."""
    feed_id = await feeds.make_feed(pool, feed_server.add("/products.txt", GOOGLE_TSV),
                                    mapping={"preset": "google-merchant"})
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert (run["inserted"], run["rejected"]) == (3, 0)
    assert details(run)["delimiter"] == "\t"
    on_sale, _ = google_items(await feeds.items(pool, feed_id))
    assert on_sale["name"] == 'LG 22LB4510 - 22" LED TV'
    assert (on_sale["barcode"], on_sale["mpn"], on_sale["external_group_id"]) == (
        "71919219405200", "22LB4510/US", "TV_22")
    assert orjson.loads(on_sale["images"]) == ["https://images.example.com/TV_123456.png"]
    assert orjson.loads(on_sale["extra"]) == {
        "description": "Attractive, and bright.", "vendorName": "LG",
        "productType": "Electronics > TVs",
        "externalUrl": "https://www.example.com/tv/22LB4510.html"}
    matched = details(run)["matched"]
    assert isinstance(matched, dict)
    assert (matched["externalId"], matched["compareAtPrice"], matched["mpn"]) == (3, 1, 1)


@pytest.mark.parametrize(("preset", "resource_type"), [
    ("shopify", "xml"), ("google-merchant", "json"),
])
async def test_a_preset_of_another_format_fails_before_downloading(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer, preset: str,
        resource_type: str) -> None:
    url = feed_server.add("/wrong", b"x")
    feed_id = await feeds.make_feed(pool, url, resource_type=resource_type,
                                    mapping={"preset": preset})
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "failed"
    assert run["error"].startswith(f"mapping.preset {preset!r} reads resource_type")
    assert feed_server.routes["/wrong"].requests == 0


async def test_a_preset_feed_through_the_daemon(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings,
        feed_server: FeedServer) -> None:
    """A pull-request for a Google Merchant feed mapped by its preset: the run-completed
    event carries what each attribute matched."""
    feed_id = await feeds.make_feed(pool, feed_server.add("/daemon.xml", GOOGLE),
                                    resource_type="xml", mapping={"preset": "google-merchant"})
    async with run_completed_events(settings) as next_event:
        await publish_pull(settings, feed_id)
        event = await next_event()
    assert (event["status"], event["inserted"]) == ("succeeded", 3), event["error"]
    assert event["matched"]["retailPrice"] == 3
    assert event["warnings"] == []  # preset attributes are not judged
    got = await feeds.items(pool, feed_id)
    assert got["TV_123457"]["inventory_policy"] == "track"


async def test_a_shopify_export_through_the_daemon(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings,
        feed_server: FeedServer) -> None:
    """A pull-request for a Shopify export mapped by its preset: the image-only rows are
    no rejects, every variant lands with its product's title."""
    feed_id = await feeds.make_feed(pool, feed_server.add("/daemon.csv", SHOPIFY),
                                    mapping={"preset": "shopify"})
    async with run_completed_events(settings) as next_event:
        await publish_pull(settings, feed_id)
        event = await next_event()
    assert (event["status"], event["inserted"], event["rejected"]) == ("succeeded", 5, 0), \
        event["error"]
    assert event["matched"]["name"] == 5
    assert event["rowsSkipped"] == {"image-only rows": 3}
    assert event["rules"] == {}
    got = await feeds.items(pool, feed_id)
    assert (got["OAK-L"]["name"], got["OAK-M"]["inventory_policy"]) == ("Oak Table", "ignore")
    run = await feeds.run_row(pool, event["runId"])
    assert details(run)["skipped"] == {"image-only rows": 3}
