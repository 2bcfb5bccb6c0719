"""The HTTP API's pure parts: tokens, the rate limit's buckets, field checks, pointers."""

from __future__ import annotations

from typing import Any

import pytest

from worker.api import feeds, tokens
from worker.api.errors import ApiError, pointer
from worker.api.limits import TokenBuckets
from worker.api.mappings import check_mapping
from worker.api.push import variant_problems
from worker.settings import Settings


def test_a_token_splits_into_its_id_and_secret() -> None:
    secret = "s" * 43
    assert tokens.split(f"fwt_12_{secret}") == (12, secret)
    assert tokens.split(f"fwt_12_{secret}_with_underscores") == (12, f"{secret}_with_underscores")
    for bad in ("", "fwt_", "fwt_x_" + secret, "abc_12_" + secret, "fwt_12_short",
                "fwt_" + "9" * 19 + "_" + secret):
        assert tokens.split(bad) is None, bad
    assert tokens.digest(secret) != tokens.digest(secret + "x")
    assert len(tokens.digest(secret)) == 32


def test_the_bucket_allows_the_burst_then_the_rate() -> None:
    b = TokenBuckets(rate_per_s=2.0, burst=3)
    assert [b.take(1, now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take(1, now=0.0) == pytest.approx(0.5)
    assert b.take(2, now=0.0) == 0.0  # another token has its own bucket
    assert b.take(1, now=0.5) == 0.0
    assert b.take(1, now=0.5) > 0


def test_pointers_escape_as_rfc_6901_says() -> None:
    assert pointer("a/b", "c~d", 3) == "/a~1b/c~0d/3"


def _feed(**more: Any) -> dict[str, Any]:
    return {**feeds.DEFAULTS, "dropshipProviderId": 1, "name": "x", **more}


def test_a_feed_is_checked_field_by_field() -> None:
    cols = feeds.columns(_feed(delimiter=";", fetchFrequency="custom", fetchIntervalSeconds=90),
                         {})
    assert (cols["delimiter"], cols["fetch_interval"], cols["mapping"]) == (";", 90.0, "{}")
    for more, where in [({"delimiter": "ab"}, "/delimiter"),
                        ({"decimalNotation": "dot"}, "/decimalNotation"),
                        ({"name": "  "}, "/name"),
                        ({"name": "a\x07b"}, "/name"),
                        ({"runDeadlineSeconds": 0}, "/runDeadlineSeconds"),
                        ({"resourceLocation": "https://"}, "/resourceLocation")]:
        with pytest.raises(ApiError) as caught:
            feeds.columns(_feed(**more), {})
        assert caught.value.details[0]["pointer"] == where, more


def test_a_masked_password_sent_back_keeps_the_stored_one() -> None:
    stored = {"resource_location": "https://u:secret@h.example/f.csv",
              "authentication_token": "tok"}
    cols = feeds.columns(_feed(resourceLocation="https://u:***@h.example/f.csv",
                               authenticationToken="***"), stored)
    assert cols["resource_location"] == stored["resource_location"]
    assert cols["authentication_token"] == "tok"
    with pytest.raises(ApiError):  # *** for another URL is not a password
        feeds.columns(_feed(resourceLocation="https://u:***@other.example/f.csv"), stored)


def test_each_bad_field_of_a_variant_has_its_reason() -> None:
    problems = variant_problems(1, {"externalId": "A", "inventoryQuantity": 1.5e40,
                                    "retailPrice": -1, "name": "fine"}, Settings())
    assert [p["pointer"] for p in problems] == ["/inventoryQuantity", "/retailPrice"]
    assert variant_problems(1, {"externalId": " "}, Settings())[0]["pointer"] == "/externalId"


@pytest.mark.parametrize(("raw", "resource_type", "header", "where"), [
    ({"fields": {"inventoryQuantity": 2}}, "ftp_csv", False, "/mapping/fields"),
    ({"fields": {"externalId": "Item"}}, "ftp_csv", False, "/mapping/fields/externalId"),
    ({"fields": {"colour": "x"}}, "ftp_csv", True, "/mapping/fields/colour"),
    ({"values": {"inventoryQuantity": {"in stock": 100, "out": "lots"}}}, "ftp_csv", True,
     "/mapping/values/inventoryQuantity/out"),
    ({"record": "/rss/item", "fields": {"externalId": "id["}}, "xml", True,
     "/mapping/fields/externalId"),
    ({"record": "/rss/item", "fields": {"externalId": "id", "inventoryQuantity": "q"},
      "values": {"inventoryQuantity": {"out of stock": "none"}}}, "xml", True,
     "/mapping/values/inventoryQuantity/out of stock"),
    ({"record": "data..items"}, "json", True, "/mapping/record"),
    ({"format": "csv"}, "json", True, "/mapping/format"),
    ({"zipEntry": 5}, "ftp_csv", True, "/mapping/zipEntry"),
    ({"timeZone": "Mars/Olympus"}, "ftp_csv", True, "/mapping/timeZone"),
    ({"pick": "oldest"}, "xml", True, "/mapping/pick"),
    ({"sftpKey": "../id_rsa"}, "ftp_csv", True, "/mapping/sftpKey"),
    ({"ftpsMode": "both"}, "xml", True, "/mapping/ftpsMode"),
    ([], "ftp_csv", True, "/mapping"),
    ({"preset": "shopify"}, "xml", True, "/mapping/preset"),
    ({"preset": "nope"}, "ftp_csv", True, "/mapping/preset"),
    ({"rules": {"barcode": {"gtin": True}}}, "ftp_csv", True, "/mapping/rules/barcode/gtin"),
    ({"rules": {"quantity": {"sum": [1]}}}, "webhook", True, "/mapping/rules/quantity/sum"),
    ({"rules": {"quantity": {"sum": ["s1", "s2"]}},
      "values": {"inventoryQuantity": {"x": "lots"}}}, "ftp_csv", True,
     "/mapping/values/inventoryQuantity/x"),
    ({"sheet": -1}, "spreadsheet", True, "/mapping/sheet"),
    ({"headerRow": 0}, "spreadsheet", True, "/mapping/headerRow"),
    ({"fields": {"externalId": "Item no."}}, "spreadsheet", False, "/mapping/fields/externalId"),
])
def test_a_mapping_is_checked_by_the_real_mapper(raw: Any, resource_type: str, header: bool,
                                                 where: str) -> None:
    with pytest.raises(ApiError) as caught:
        check_mapping(raw, resource_type, header)
    assert caught.value.details[0]["pointer"] == where


@pytest.mark.parametrize(("raw", "resource_type", "header"), [
    ({}, "webhook", True),
    ({"fields": {"externalId": "Item ID"}}, "ftp_csv", True),
    ({"fields": {"externalId": 0, "inventoryQuantity": 2}}, "ftp_csv", False),
    ({"values": {"inventoryQuantity": {"in stock": 100, "out": 0}}}, "ftp_csv", True),
    ({"record": "/rss/channel/item", "namespaces": {"g": "http://base.google.com/ns/1.0"},
      "fields": {"externalId": "g:id", "inventoryQuantity": "g:availability"},
      "values": {"inventoryQuantity": {"in stock": 100, "out of stock": 0}}}, "xml", True),
    ({"record": "data.items", "fields": {"externalId": "id", "inventoryQuantity": "stock.n"}},
     "json", True),
    ({"preset": "shopify"}, "ftp_csv", True),
    ({"preset": "google-merchant"}, "xml", True),
    ({"rules": {"quantity": {"sum": {"eu": "stock_a", "us": 4}}}}, "ftp_csv", True),
    ({"rules": {"quantity": {"sum": [2, 3]}}, "fields": {"externalId": 0},
      "values": {"inventoryQuantity": {"x": 5}}}, "ftp_csv", False),
    ({"rules": {"quantity": {"sum": ["stock.eu"]}}}, "webhook", True),
    ({"rules": {"price": {"markupPercent": 10, "rounding": ".99"}},
      "values": {"retailPrice": {"free": 0}}}, "ftp_csv", True),
    ({"sheet": 1, "headerRow": 3, "fields": {"externalId": "Item no."}}, "spreadsheet", True),
    ({"sheet": "Stock", "fields": {"externalId": 0}}, "spreadsheet", False),
    ({"preset": "woocommerce", "sheet": "Export"}, "spreadsheet", True),
])
def test_a_good_mapping_is_kept_as_sent(raw: Any, resource_type: str, header: bool) -> None:
    assert check_mapping(raw, resource_type, header) == raw
