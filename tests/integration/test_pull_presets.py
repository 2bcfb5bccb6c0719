"""Presets pulled end to end: each export format's file, in its real shape (the columns and
values its platform writes), served over loopback HTTP and mapped by `"preset"` alone."""

from __future__ import annotations

from decimal import Decimal

import asyncpg
import orjson
import pytest

from tests.integration.test_daemon import run_completed_events
from tests.support import feeds
from tests.support.feedserver import FeedServer
from worker.publish import publish_pull
from worker.settings import Settings

# Shopify's product CSV export: the product's columns on its first row only, one row per
# variant, and a row with only an image for the product's second image.
SHOPIFY = (
    "Handle,Title,Body (HTML),Vendor,Product Category,Type,Tags,Published,Option1 Name,"
    "Option1 Value,Option2 Name,Option2 Value,Option3 Name,Option3 Value,Variant SKU,"
    "Variant Grams,Variant Inventory Tracker,Variant Inventory Qty,Variant Inventory Policy,"
    "Variant Fulfillment Service,Variant Price,Variant Compare At Price,"
    "Variant Requires Shipping,Variant Taxable,Variant Barcode,Image Src,Image Position,"
    "Image Alt Text,Gift Card,SEO Title,SEO Description,Variant Image,Variant Weight Unit,"
    "Variant Tax Code,Cost per item,Status\n"
    'oak-table,Oak Table,"<p>Solid oak, oiled.</p>",Woodworks,Furniture > Tables,Table,'
    '"oak, dining",TRUE,Size,Small,,,,,OAK-S,12000,shopify,4,deny,manual,249.00,299.00,'
    "TRUE,TRUE,0012345678905,https://cdn.shopify.com/s/files/oak-1.jpg,1,,FALSE,,,,kg,,"
    "120.00,active\n"
    "oak-table,,,,,,,,,Large,,,,,OAK-L,18000,shopify,0,continue,manual,349.00,,TRUE,TRUE,"
    "0012345678912,,,,,,,,kg,,,active\n"
    "oak-table,,,,,,,,,,,,,,,,,,,,,,,,,https://cdn.shopify.com/s/files/oak-2.jpg,2,,,,,,,,,\n"
)

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
    ",,45,,,,,,,id:12,,,,,,1,Color,Blue,,1\n"
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


def details(run: dict[str, object]) -> dict[str, object]:
    raw = run["details"]
    assert isinstance(raw, str)
    parsed: dict[str, object] = orjson.loads(raw)
    return parsed


async def test_shopify(pool: asyncpg.Pool, settings: Settings,
                       feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(pool, feed_server.add("/products_export.csv",
                                                          SHOPIFY.encode()),
                                    mapping={"preset": "shopify"})
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    # The image-only row has no Variant SKU: rejected as a row without externalId.
    assert (run["inserted"], run["rejected"]) == (2, 1)
    [reject] = await feeds.rejects(pool, run["id"])
    assert (reject["position"], reject["reason"]) == (4, "externalId is blank")
    got = await feeds.items(pool, feed_id)
    small, large = got["OAK-S"], got["OAK-L"]
    # deny: Shopify refuses orders at 0, the quantity is tracked; continue: sells past 0
    assert (small["inventory_policy"], large["inventory_policy"]) == ("track", "continue")
    assert (small["inventory_quantity"], large["inventory_quantity"]) == (4, 0)
    assert (small["retail_price"], small["compare_at_price"], small["cost_price"]) == (
        Decimal("249.00"), Decimal("299.00"), Decimal("120.00"))
    assert large["compare_at_price"] is None
    assert (small["grams"], small["barcode"], small["vendor_sku"]) == (
        Decimal("12000"), "0012345678905", "OAK-S")
    assert (small["name"], small["external_group_id"]) == ("Oak Table", "oak-table")
    assert orjson.loads(small["images"]) == ["https://cdn.shopify.com/s/files/oak-1.jpg"]
    extra = orjson.loads(small["extra"])
    assert extra["vendorName"] == "Woodworks"
    assert extra["productType"] == "Table"
    assert extra["handle"] == "oak-table"
    assert details(run)["matched"]["inventoryPolicy"] == 2  # type: ignore[index]


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
    assert (blue["retail_price"], red["retail_price"]) == (Decimal("45"), Decimal("1045.50"))
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


async def test_google_merchant(pool: asyncpg.Pool, settings: Settings,
                               feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(pool, feed_server.add("/products.xml", GOOGLE),
                                    resource_type="xml", mapping={"preset": "google-merchant"})
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert (run["inserted"], run["rejected"]) == (3, 0)
    got = await feeds.items(pool, feed_id)
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
    assert on_sale["name"] == 'LG 22LB4510 - 22" LED TV - 1080p (FullHD)'
    assert plain["name"] == "LG 24LB4510"  # <title> without the prefix, as the spec allows
    assert (on_sale["barcode"], on_sale["mpn"], on_sale["external_group_id"]) == (
        "71919219405200", "22LB4510/US", "TV_22")
    assert orjson.loads(on_sale["images"]) == ["https://images.example.com/TV_123456.png"]
    matched = details(run)["matched"]
    assert isinstance(matched, dict)
    assert (matched["externalId"], matched["compareAtPrice"], matched["mpn"]) == (3, 1, 1)


@pytest.mark.parametrize(("preset", "resource_type"), [
    ("shopify", "xml"), ("google-merchant", "ftp_csv"),
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
