"""Mappings of well-known export formats, as data: `"preset": "shopify"` in a feed's mapping
stands for the fields and value maps below. feedmapping.parse_mapping merges them into the
feed's FeedMapping: the feed's own `fields` and `values` win over the preset's, the preset's
over the template names (auto-mapping).

A preset column the file does not have is left out (a shop's export has only the columns it
uses); a preset attribute that no record fills is not written (see pipeline/matches.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Preset:
    resource_types: tuple[str, ...]  # the feeds' resource_type it reads
    fields: dict[str, str]
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    record: str = ""                 # XML: the record element's path
    namespaces: dict[str, str] = field(default_factory=dict)


CSV = ("ftp_csv",)
GOOGLE_NS = "http://base.google.com/ns/1.0"

# Shopify's product CSV export: one row per variant, the product's columns on its first row.
# `Variant Inventory Policy` is Shopify's: `deny` refuses orders at 0 (the quantity is
# tracked: the reference's `track`), `continue` keeps selling past 0.
SHOPIFY = Preset(CSV, {
    "externalId": "Variant SKU", "vendorSku": "Variant SKU", "barcode": "Variant Barcode",
    "name": "Title", "inventoryQuantity": "Variant Inventory Qty",
    "inventoryPolicy": "Variant Inventory Policy", "retailPrice": "Variant Price",
    "compareAtPrice": "Variant Compare At Price", "costPrice": "Cost per item",
    "grams": "Variant Grams", "externalGroupId": "Handle", "images": "Image Src",
    "handle": "Handle", "description": "Body (HTML)", "vendorName": "Vendor",
    "productType": "Type", "tags": "Tags", "hsCode": "Variant HS Code",
    "countryOfOrigin": "Variant Country of Origin",
}, {"inventoryPolicy": {"deny": "track", "continue": "continue"}})

# WooCommerce's product CSV export (Products > Export): one row per product or variation;
# a variation's `Parent` names its product (`id:12` or the parent's SKU).
WOOCOMMERCE = Preset(CSV, {
    "externalId": "SKU", "vendorSku": "SKU", "name": "Name", "inventoryQuantity": "Stock",
    "retailPrice": "Regular price", "externalGroupId": "Parent", "images": "Images",
    "description": "Description", "tags": "Tags", "productType": "Type",
})

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

# Google Merchant Center's RSS 2.0 feed. `g:price` is the regular price; while an item is
# on sale, `g:sale_price` is what it sells for and `g:price` the compare-at price (XPath
# unions of which one side selects, the record's own `self::` standing for a condition).
# Title, description and link may come with or without the `g:` prefix. The feed has no
# quantities, only `g:availability`: out of stock is a tracked 0, preorder and backorder
# keep selling at 0, in stock is available without a tracked quantity.
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
}, {
    # Google's spellings: `in_stock` (the current spec) and `in stock` (older feeds).
    "inventoryPolicy": {"in stock": "ignore", "in_stock": "ignore",
                        "out of stock": "track", "out_of_stock": "track",
                        "preorder": "continue", "backorder": "continue"},
    "inventoryQuantity": {"in stock": "", "in_stock": "", "out of stock": "0",
                          "out_of_stock": "0", "preorder": "0", "backorder": "0"},
}, record="/rss/channel/item", namespaces={"g": GOOGLE_NS})

PRESETS: dict[str, Preset] = {
    "shopify": SHOPIFY, "woocommerce": WOOCOMMERCE, "bigcommerce": BIGCOMMERCE,
    "google-merchant": GOOGLE_MERCHANT,
}
