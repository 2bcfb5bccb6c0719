"""Mappings of well-known export formats, as data: `"preset": "shopify"` in a feed's mapping
stands for the fields and value maps below. feedmapping.parse_mapping merges them into the
feed's FeedMapping: the feed's own `fields` and `values` win over the preset's, the preset's
over the template names (auto-mapping).

A preset column the file does not have is left out (a shop's export has only the columns it
uses; a CSV preset's column names match in any case and with any separators: `image link`
is `image_link`); a preset attribute that no record fills is not written (see
pipeline/matches.py). A name may stand for a preset of each resource type (google-merchant:
the XML feed and the tab-separated text feed).

A CSV preset's `rows` (Rows) says how its rows lean on one another: worker/rowshape.py
makes each row stand alone before it is mapped.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rows:
    """How a CSV export's rows depend on each other or on columns no attribute reads (header
    names; a name the file lacks is left out)."""

    # Rows with the same `group` value in a run are one product; `fill_down` columns are
    # given on its first row only, the later rows take them from the row before.
    group: str = ""
    fill_down: tuple[str, ...] = ()
    # A row with a value in `images[0]` and none in the columns the mapping reads but
    # `group` and `images` only adds an image to its product: skipped (counted, no reject).
    images: tuple[str, ...] = ()
    # Where the `tracker` column is blank the quantity is not tracked: each of `untracked`'s
    # columns reads as the value it gives (column -> value).
    tracker: str = ""
    untracked: dict[str, str] = field(default_factory=dict)
    # The sale price column: where it has a value, that is the retailPrice and the column
    # the retailPrice reads is the compareAtPrice (a compareAtPrice read from that column is
    # blank otherwise).
    sale: str = ""


@dataclass(frozen=True)
class Preset:
    resource_types: tuple[str, ...]  # the feeds' resource_type it reads
    fields: dict[str, str]
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    record: str = ""                 # XML: the record element's path
    namespaces: dict[str, str] = field(default_factory=dict)
    rows: Rows | None = None         # CSV: how rows depend on each other


CSV = ("ftp_csv", "spreadsheet")  # a spreadsheet's rows are mapped as a CSV's
GOOGLE_NS = "http://base.google.com/ns/1.0"

# Shopify's product CSV export: one row per variant, grouped by `Handle`; the product's
# columns (Title, Body, Vendor, Type, Tags) on its first row only, so the others take them
# from it; a row with only `Handle` and an image adds an image to the product (skipped).
# A blank `Variant Inventory Tracker` is a variant whose quantity is not tracked (`ignore`,
# no quantity); a tracked one (`shopify`, or a fulfillment service's name) has a
# `Variant Inventory Policy`: `deny` refuses orders at 0 (the reference's `track`),
# `continue` keeps selling past 0.
SHOPIFY = Preset(CSV, {
    "externalId": "Variant SKU", "vendorSku": "Variant SKU", "barcode": "Variant Barcode",
    "name": "Title", "inventoryQuantity": "Variant Inventory Qty",
    "inventoryPolicy": "Variant Inventory Policy", "retailPrice": "Variant Price",
    "compareAtPrice": "Variant Compare At Price", "costPrice": "Cost per item",
    "grams": "Variant Grams", "externalGroupId": "Handle", "images": "Image Src",
    "handle": "Handle", "description": "Body (HTML)", "vendorName": "Vendor",
    "productType": "Type", "tags": "Tags", "hsCode": "Variant HS Code",
    "countryOfOrigin": "Variant Country of Origin",
}, {"inventoryPolicy": {"deny": "track", "continue": "continue"}}, rows=Rows(
    group="Handle", fill_down=("Title", "Body (HTML)", "Vendor", "Type", "Tags"),
    images=("Image Src", "Image Position", "Image Alt Text"),
    tracker="Variant Inventory Tracker",
    untracked={"Variant Inventory Policy": "ignore", "Variant Inventory Qty": ""},
))

# WooCommerce's product CSV export (Products > Export): one row per product or variation;
# a variation's `Parent` names its product (`id:12` or the parent's SKU). On sale (a
# `Sale price`), it sells for the sale price and `Regular price` is the compare-at price.
WOOCOMMERCE = Preset(CSV, {
    "externalId": "SKU", "vendorSku": "SKU", "name": "Name", "inventoryQuantity": "Stock",
    "retailPrice": "Regular price", "compareAtPrice": "Regular price",
    "externalGroupId": "Parent", "images": "Images", "description": "Description",
    "tags": "Tags", "productType": "Type",
}, rows=Rows(sale="Sale price"))

# BigCommerce's product export (Export Products, "Bulk Edit" template): `Price` is the
# selling price, `Retail Price` the MSRP shown struck through; `Track Inventory` is `none`
# or tracked by product or by option.
BIGCOMMERCE = Preset(CSV, {
    "externalId": "Product Code/SKU", "vendorSku": "Product Code/SKU",
    "name": "Product Name", "inventoryQuantity": "Current Stock Level",
    "inventoryPolicy": "Track Inventory", "retailPrice": "Price",
    "compareAtPrice": "Retail Price", "costPrice": "Cost Price",
    "barcode": "Product UPC/EAN", "mpn": "Manufacturer Part Number",
    "externalGroupId": "Product ID", "vendorName": "Brand Name",
    "description": "Product Description", "productType": "Product Type",
}, {"inventoryPolicy": {"none": "ignore", "by product": "track", "by option": "track"}})

# Google Merchant Center's feeds have no quantities, only `availability`: out of stock is a
# tracked 0, preorder and backorder keep selling at 0, in stock is available without a
# tracked quantity. Google's spellings: `in_stock` (the current spec) and `in stock`.
GOOGLE_AVAILABILITY = {
    "inventoryPolicy": {"in stock": "ignore", "in_stock": "ignore",
                        "out of stock": "track", "out_of_stock": "track",
                        "preorder": "continue", "backorder": "continue"},
    "inventoryQuantity": {"in stock": "", "in_stock": "", "out of stock": "0",
                          "out_of_stock": "0", "preorder": "0", "backorder": "0"},
}

# Google Merchant Center's RSS 2.0 feed. `g:price` is the regular price; while an item is
# on sale, `g:sale_price` is what it sells for and `g:price` the compare-at price (XPath
# unions of which one side selects, the record's own `self::` standing for a condition).
# Title, description and link may come with or without the `g:` prefix.
GOOGLE_MERCHANT = Preset(("xml",), {
    "externalId": "g:id", "name": "g:title | title", "barcode": "g:gtin", "mpn": "g:mpn",
    "externalGroupId": "g:item_group_id",
    "retailPrice": "self::*[g:sale_price[normalize-space()]]/g:sale_price"
                   " | self::*[not(g:sale_price[normalize-space()])]/g:price",
    "compareAtPrice": "self::*[g:sale_price[normalize-space()]]/g:price",
    "inventoryPolicy": "g:availability", "inventoryQuantity": "g:availability",
    "images": "g:image_link", "description": "g:description | description",
    "vendorName": "g:brand", "productType": "g:product_type",
    "externalUrl": "g:link | link",
}, GOOGLE_AVAILABILITY, record="/rss/channel/item", namespaces={"g": GOOGLE_NS})

# Google Merchant Center's text feed (tab-separated, or a CSV): the header names the
# attributes (`image_link`, or `image link` as Google's templates write it). The same
# meanings as the XML feed's: on sale, `sale_price` is the retailPrice and `price` the
# compareAtPrice.
GOOGLE_MERCHANT_TEXT = Preset(CSV, {
    "externalId": "id", "name": "title", "barcode": "gtin", "mpn": "mpn",
    "externalGroupId": "item_group_id", "retailPrice": "price", "compareAtPrice": "price",
    "inventoryPolicy": "availability", "inventoryQuantity": "availability",
    "images": "image_link", "description": "description", "vendorName": "brand",
    "productType": "product_type", "externalUrl": "link",
}, GOOGLE_AVAILABILITY, rows=Rows(sale="sale_price"))

# A name -> its preset for each resource type it reads.
PRESETS: dict[str, tuple[Preset, ...]] = {
    "shopify": (SHOPIFY,), "woocommerce": (WOOCOMMERCE,), "bigcommerce": (BIGCOMMERCE,),
    "google-merchant": (GOOGLE_MERCHANT, GOOGLE_MERCHANT_TEXT),
}


def preset_for(name: str, resource_type: str) -> Preset | None:
    """The preset `name` stands for in a feed of `resource_type` (None: none)."""
    return next((p for p in PRESETS.get(name, ()) if resource_type in p.resource_types),
                None)
